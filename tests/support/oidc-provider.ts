/**
 * A real OpenID Connect provider on loopback (the `oidc-provider` package, with its built-in login and
 * consent pages) for the dashboard's single sign-on tests. Any login name is accepted as the user's
 * email; names starting with "unverified" get `email_verified: false`.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Provider from "oidc-provider";

/** A running provider. */
export interface OidcProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  close(): Promise<void>;
}

/** Starts a provider whose one confidential client may redirect to `redirectUri`. */
export async function startOidcProvider(redirectUri: string): Promise<OidcProvider> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientId = "switchyard-dashboard";
  const clientSecret = `secret-${crypto.randomUUID()}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_post",
      },
    ],
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id, email: id, email_verified: !id.startsWith("unverified") }) }),
    claims: { openid: ["sub"], email: ["email", "email_verified"] },
    pkce: { required: () => true },
    cookies: { keys: [crypto.randomUUID()] },
    features: { devInteractions: { enabled: true } },
  });
  // Quiet: the provider warns about its development keys and interactions, as meant for tests.
  provider.on("server_error", (_ctx, err) => console.error("oidc-provider:", err));
  const handle = provider.callback();
  server.on("request", (req, res) => void handle(req, res));
  return {
    issuer,
    clientId,
    clientSecret,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
