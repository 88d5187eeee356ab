import { ConfigError, parseConfig, SETTINGS, type BackplaneConfig, type EngineConfig, type RawConfig, type SettingName } from "../config.ts";
import { type Check, check } from "./doctor-types.ts";

/**
 * Every configuration problem at once, for `backplane doctor`. `parseConfig` (what `start` runs)
 * stops at the first invalid setting; here each reported setting is replaced by a value that passes
 * (a stand-in) and the settings are parsed again, until they parse or nothing new is found. Engines
 * are checked one by one first, since one `--engine` error would hide the next.
 */

/** The settings' verdict: the config when every setting is valid, else one failed check per problem. */
export type SettingsVerdict = { config: BackplaneConfig; problems: [] } | { config: null; problems: Check[] };

const STAND_IN_SECRET = "s".repeat(32);
const standInSpec = (i: number) => `kind=vllm,url=http://127.0.0.1:1,id=doctor-stand-in-${i}`;
const standInEngine = (i: number): Partial<EngineConfig> => ({ kind: "vllm", url: "http://127.0.0.1:1", id: `doctor-stand-in-${i}` });

/** Values that pass in place of a setting already reported (undefined: its default, which always passes). */
function standIn(name: SettingName): RawConfig {
  switch (name) {
    case "nodeId":
    case "region":
      return { [name]: "doctor-stand-in" };
    case "secret":
      return { secret: STAND_IN_SECRET };
    case "engines":
      return { engines: standInSpec(0) };
    // Both TLS files go together; without them a non-loopback host would be refused too, which is
    // not a problem of the operator's settings but of the stand-in.
    case "tlsCertFile":
    case "tlsKeyFile":
      return { tlsCertFile: undefined, tlsKeyFile: undefined, allowInsecureHttp: true };
    case "allowInsecureHttp":
      return { allowInsecureHttp: true };
    default:
      return { [name]: undefined };
  }
}

/** The setting a ConfigError message names ("Invalid backplane setting --flag / ENV: …"), or null. */
function settingOf(message: string): SettingName | null {
  for (const [name, s] of Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][]) {
    if (message.includes(`${s.flag} / ${s.env}:`)) return name;
  }
  return null;
}

function problem(message: string): Check {
  const name = settingOf(message);
  if (name === null) return check("config", "fail", message, "fix the setting named above (`backplane start --help` lists every setting)");
  const s = SETTINGS[name];
  const verb = message.endsWith("is required") ? "set" : "correct";
  return check("config", "fail", message, `${verb} ${s.flag} (or ${s.env}): ${s.help}`);
}

function isStrings(specs: string[] | Partial<EngineConfig>[]): specs is string[] {
  return specs.every((s) => typeof s === "string");
}

/** The first `count` engine specs, those `replace` picks swapped for stand-ins (indexes, hence default ids, kept). */
function enginesWith(specs: string[] | Partial<EngineConfig>[], count: number, replace: (i: number) => boolean): string[] | Partial<EngineConfig>[] {
  if (isStrings(specs)) return specs.slice(0, count).map((s, i) => (replace(i) ? standInSpec(i) : s));
  return specs.slice(0, count).map((s, i) => (replace(i) ? standInEngine(i) : s));
}

/** Checks each engine spec at its own index (the ones before it stood in for); returns the indexes of the bad ones. */
function engineProblems(raw: RawConfig["engines"], problems: Check[]): Set<number> {
  const bad = new Set<number>();
  if (raw === undefined || (typeof raw === "string" && raw.trim() === "")) return bad;
  const specs = typeof raw === "string" ? raw.split(";").map((s) => s.trim()).filter(Boolean) : raw;
  for (let i = 0; i < specs.length; i++) {
    try {
      parseConfig({ nodeId: "doctor-stand-in", region: "doctor-stand-in", secret: STAND_IN_SECRET, engines: enginesWith(specs, i + 1, (j) => j < i) });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(problem(err.message));
      bad.add(i);
    }
  }
  return bad;
}

/** Validates the settings as `backplane start` would, reporting every problem rather than the first. */
export function checkSettings(raw: RawConfig): SettingsVerdict {
  const problems: Check[] = [];
  let attempt: RawConfig = { ...raw };
  const badEngines = engineProblems(raw.engines, problems);
  if (badEngines.size > 0 && raw.engines !== undefined) {
    const specs = typeof raw.engines === "string" ? raw.engines.split(";").map((s) => s.trim()).filter(Boolean) : raw.engines;
    attempt = { ...attempt, engines: enginesWith(specs, specs.length, (i) => badEngines.has(i)) };
  }
  const reported = new Set<SettingName>();
  for (;;) {
    try {
      const config = parseConfig(attempt);
      return problems.length === 0 ? { config, problems: [] } : { config: null, problems };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(problem(err.message));
      const name = settingOf(err.message);
      // A setting reported twice means its stand-in did not help: stop rather than loop.
      if (name === null || reported.has(name)) return { config: null, problems };
      reported.add(name);
      attempt = { ...attempt, ...standIn(name) };
    }
  }
}
