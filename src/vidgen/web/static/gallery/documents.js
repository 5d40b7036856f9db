// The GraphQL documents the gallery sends: public API names only.

const CARD = `
fragment Card on Video {
  id status progress statusMessage prompt provider model resolution outputFormat
  durationSeconds thumbnailUrl videoUrl inputImageUrl errorMessage version eventCursor
  createdAt deletedAt caption tags { name } project { id } story { id }
}`;

export const LOGIN = `
mutation Login($input: LoginInput!) { login(input: $input) { token user { id email } } }`;

export const REGISTER = `
mutation Register($input: RegisterInput!) { register(input: $input) { token user { id email } } }`;

export const LOGOUT = `mutation Logout { logout }`;

export const START = `
query Start {
  viewer { id email }
  providers {
    name available textToVideo imageToVideo resolutions outputFormats minDurationSeconds
    maxDurationSeconds durations maxPromptLength defaultModel defaultResolution
    models { name resolutions minDurationSeconds maxDurationSeconds durations }
  }
  projects(first: 100) { edges { node { id name } } }
  stories(first: 100) { edges { node { id title project { id } } } }
  tags { name }
}`;

export const VIDEOS = `
query Videos($first: Int, $after: String, $filter: VideoFilter) {
  videos(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { ...Card } }
  }
}
${CARD}`;

export const LIVE = `
subscription Live($after: String) { videoUpdates(after: $after) { ...Card } }
${CARD}`;

export const GENERATE = `
mutation Generate($input: GenerateVideoInput!) { generateVideo(input: $input) { ...Card } }
${CARD}`;

const action = (name) => `
mutation Act($id: ID!) { ${name}(id: $id) { ...Card } }
${CARD}`;

export const ACTIONS = {
  cancel: action("cancelVideo"),
  retry: action("retryVideo"),
  delete: action("deleteVideo"),
  restore: action("restoreVideo"),
};
