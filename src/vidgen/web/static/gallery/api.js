// The gallery's HTTP client of the public GraphQL API, and the session token.
//
// The token lives in this tab's sessionStorage only: never in a URL, never in a cookie,
// gone when the tab closes.

const TOKEN_KEY = "vidgen.token";
export const GRAPHQL_PATH = "/graphql";

export function getToken() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

/** A GraphQL error as the API reports it: its message, `extensions.code` and (for
 * BAD_USER_INPUT) `extensions.field`. */
export class ApiError extends Error {
  constructor(message, code = "INTERNAL", field = null, retryAfter = null) {
    super(message);
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }

  static fromGraphQL(error) {
    const ext = (error && error.extensions) || {};
    return new ApiError(
      (error && error.message) || "Unknown error",
      ext.code || "INTERNAL",
      ext.field || null,
      ext.retryAfter ?? null,
    );
  }

  /** "message (CODE)": what the page shows. */
  get display() {
    const wait = this.retryAfter ? ` Try again in ${Math.ceil(this.retryAfter)} s.` : "";
    return `${this.message}${wait} (${this.code})`;
  }
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function readResult(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    const text = response.status ? `HTTP ${response.status}` : "no answer";
    throw new ApiError(`The server answered ${text}, not GraphQL.`, "INTERNAL");
  }
  if (body.errors && body.errors.length) throw ApiError.fromGraphQL(body.errors[0]);
  if (!response.ok) throw new ApiError(`HTTP ${response.status}`, "INTERNAL");
  return body.data;
}

async function send(init) {
  try {
    return await fetch(GRAPHQL_PATH, { ...init, credentials: "omit", cache: "no-store" });
  } catch (error) {
    throw new ApiError(`The server could not be reached (${error.message}).`, "NETWORK");
  }
}

/** Run a query or mutation; resolves to `data`, rejects with an ApiError. */
export async function gql(query, variables = {}) {
  const response = await send({
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ query, variables }),
  });
  return readResult(response);
}

/** A mutation with one file, as a GraphQL multipart request: `path` is where the file goes
 * in the variables (e.g. "input.inputImage"). */
export async function gqlUpload(query, variables, path, file) {
  const form = new FormData();
  form.append("operations", JSON.stringify({ query, variables }));
  form.append("map", JSON.stringify({ 0: [`variables.${path}`] }));
  form.append("0", file, file.name);
  const response = await send({
    method: "POST",
    // Asks for a CORS preflight: the API refuses multipart requests without it (CSRF).
    headers: { "Apollo-Require-Preflight": "true", ...authHeaders() },
    body: form,
  });
  return readResult(response);
}
