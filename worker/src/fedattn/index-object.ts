import { DurableObject } from "cloudflare:workers";

const KEY = "ids";

/**
 * The index of active federated-attention sessions: one object (`idFromName("index")`) holding
 * their ids, added when a session starts and removed when it ends (by request or idle alarm). The
 * sessions themselves stay the source of truth for everything else; `GET /active` asks each one.
 * The ids are kept in the object's storage as well, so an evicted index comes back with them.
 */
export class FedattnIndex extends DurableObject<Env> {
  private ids = new Set<string>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.ids = new Set((await ctx.storage.get<string[]>(KEY)) ?? []);
    });
  }

  /** Adds a session id. */
  async add(id: string): Promise<void> {
    this.ids.add(id);
    await this.ctx.storage.put(KEY, [...this.ids]);
  }

  /** Removes a session id (harmless when absent). */
  async remove(id: string): Promise<void> {
    if (!this.ids.delete(id)) return;
    await this.ctx.storage.put(KEY, [...this.ids]);
  }

  /** The active session ids. */
  list(): string[] {
    return [...this.ids];
  }
}
