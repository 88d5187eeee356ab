import { execFile } from "node:child_process";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import type { BackplaneConfig } from "../config.ts";
import { SETTINGS } from "../config.ts";
import { type Check, check, isLoopbackHost, reason } from "./doctor-types.ts";

const DAY_MS = 86_400_000;
/** Warn this long before the certificate expires. */
const EXPIRY_WARN_DAYS = 14;
/** nvidia-smi can hang for seconds on a wedged driver. */
const NVIDIA_SMI_TIMEOUT_MS = 10_000;

const TLS_FLAGS = `${SETTINGS.tlsCertFile.flag} and ${SETTINGS.tlsKeyFile.flag}`;

async function readPem(path: string): Promise<string | Check> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    return check("tls", "fail", `cannot read ${path} (${reason(err)})`, "check the path, and that the service user may read the file");
  }
}

/** Checks the TLS certificate and key: readable, parseable, matching, in date, and covering the public host. */
export async function checkTls(config: BackplaneConfig, now: () => number): Promise<Check> {
  if (config.tlsCertFile === null || config.tlsKeyFile === null) {
    if (isLoopbackHost(config.host)) return check("tls", "ok", `plain HTTP on loopback (${config.host}); put a tunnel or a TLS proxy in front for the gateway`);
    return check("tls", "warn", `plain HTTP on ${config.host}: traffic to the node is unencrypted`, `give ${TLS_FLAGS}, or listen on 127.0.0.1 behind a tunnel`);
  }
  const certPem = await readPem(config.tlsCertFile);
  if (typeof certPem !== "string") return certPem;
  const keyPem = await readPem(config.tlsKeyFile);
  if (typeof keyPem !== "string") return keyPem;

  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    return check("tls", "fail", `${config.tlsCertFile} is not a PEM certificate (${reason(err)})`, `point ${SETTINGS.tlsCertFile.flag} at the PEM certificate (leaf first, then the chain)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    return check("tls", "fail", `${config.tlsKeyFile} is not a PEM private key (${reason(err)})`, `point ${SETTINGS.tlsKeyFile.flag} at the unencrypted PEM private key`);
  }
  if (!cert.checkPrivateKey(key)) {
    return check("tls", "fail", `${config.tlsKeyFile} is not the key of ${config.tlsCertFile}`, "use the private key the certificate was issued for");
  }
  const at = now();
  const renew = "renew the certificate (e.g. `certbot renew`) and restart the backplane";
  if (at < cert.validFromDate.getTime()) return check("tls", "fail", `certificate is not valid before ${cert.validFromDate.toISOString()}`, "check this host's clock, or use a certificate already valid");
  if (at > cert.validToDate.getTime()) return check("tls", "fail", `certificate expired on ${cert.validToDate.toISOString()}`, renew);
  const daysLeft = Math.floor((cert.validToDate.getTime() - at) / DAY_MS);
  const summary = `${cert.subject.replaceAll("\n", ", ")}, expires ${cert.validToDate.toISOString().slice(0, 10)} (${daysLeft} days)`;
  if (daysLeft < EXPIRY_WARN_DAYS) return check("tls", "warn", `certificate expires in ${daysLeft} days: ${summary}`, renew);

  const publicUrl = new URL(config.publicUrl);
  const host = publicUrl.hostname.replace(/^\[|\]$/g, "");
  if (publicUrl.protocol === "https:") {
    const covered = isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
    if (!covered) return check("tls", "warn", `certificate does not cover ${host} (${summary})`, `use a certificate for ${host}, or fix ${SETTINGS.publicUrl.flag}`);
  }
  return check("tls", "ok", summary);
}

/** Runs `nvidia-smi -L`: missing is a warning (a host may have no GPU, e.g. in tests), failing is a failure. */
export function checkGpu(config: BackplaneConfig): Promise<Check> {
  return new Promise((resolve) => {
    execFile(config.nvidiaSmiPath, ["-L"], { timeout: NVIDIA_SMI_TIMEOUT_MS }, (err, stdout, stderr) => {
      const firstLine = (text: string) => text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
      if (err !== null && (err as NodeJS.ErrnoException).code === "ENOENT") {
        resolve(check("gpu", "warn", `${config.nvidiaSmiPath} not found: no NVIDIA driver, or not on PATH (GPU facts are skipped)`, `install the NVIDIA driver, or set ${SETTINGS.nvidiaSmiPath.flag} / ${SETTINGS.nvidiaSmiPath.env} to its path`));
        return;
      }
      const fix = "check the NVIDIA driver (reboot after a kernel or driver update; `dmesg | grep -i nvrm`)";
      if (err !== null) {
        const said = firstLine(stdout) || firstLine(stderr) || reason(err);
        resolve(check("gpu", "fail", `${config.nvidiaSmiPath} -L failed: ${said}`, fix));
        return;
      }
      const gpus = stdout.split("\n").filter((l) => l.startsWith("GPU "));
      if (gpus.length === 0) {
        resolve(check("gpu", "fail", `${config.nvidiaSmiPath} -L lists no GPU`, fix));
        return;
      }
      const names = gpus.map((l) => l.replace(/^GPU \d+: /, "").replace(/ \(UUID: [^)]*\)$/, ""));
      resolve(check("gpu", "ok", `${gpus.length} GPU${gpus.length === 1 ? "" : "s"}: ${names.join(", ")}`));
    });
  });
}
