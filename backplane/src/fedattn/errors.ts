/** The federated-attention participant's error type, and reading the reason out of an error body. */

/** Why a federated-attention run failed: the gateway refused or was unreachable, the engine likewise, a wait ran out, or bad options. */
export type FedattnErrorCode = "gateway_error" | "gateway_unreachable" | "engine_error" | "engine_unsupported" | "timeout" | "invalid_options";

/** A federated-attention participant's one error type; the message says what happened and what to do. */
export class FedattnError extends Error {
  override readonly name = "FedattnError";
  readonly code: FedattnErrorCode;
  /** The HTTP status of a refused call, when there was one. */
  readonly status: number | null;
  constructor(code: FedattnErrorCode, message: string, status: number | null = null) {
    super(message);
    this.code = code;
    this.status = status;
  }
}
