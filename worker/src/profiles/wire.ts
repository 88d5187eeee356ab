/** A profile as the admin API shows it (the CLI and tests read this shape). */
export interface StreamProfileJson {
  object: "stream_profile";
  name: string;
  chunk_tokens: number;
  timeout_ms: number;
  buffer_tokens: number;
  interval_ms: number;
  builtin: boolean;
  overridden: boolean;
  route: string;
  updated_at: string | null;
}
