"""GraphQL documents shared by the API tests: the public names of docs/contract.md, as a
client writes them."""

VIDEO_FIELDS = """
    id status progress prompt provider model caption videoStyle resolution outputFormat
    durationSeconds frameRate fileSize width height videoUrl thumbnailUrl inputImageUrl
    theme { name } tags { name } project { id } story { id } paragraphIndex predictionId
    errorMessage retryCount priority scheduledAt version eventCursor createdAt updatedAt
    completedAt deletedAt statusHistory { status at message } owner { id email }
"""

REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) { token user { id email isAdmin } }
}
"""

LOGIN = """
mutation Login($input: LoginInput!) {
  login(input: $input) { token user { id email isAdmin } }
}
"""

LOGOUT = "mutation { logout }"

VIEWER = "query { viewer { id email isAdmin } }"

PROVIDERS = """
query {
  providers {
    name available textToVideo imageToVideo resolutions outputFormats maxDurationSeconds
  }
}
"""

CREATE_PROJECT = """
mutation CreateProject($input: CreateProjectInput!) {
  createProject(input: $input) { id name description createdAt }
}
"""

UPDATE_PROJECT = """
mutation UpdateProject($id: ID!, $input: UpdateProjectInput!) {
  updateProject(id: $id, input: $input) { id name description }
}
"""

DELETE_PROJECT = "mutation DeleteProject($id: ID!) { deleteProject(id: $id) }"

PROJECT = """
query Project($id: ID!) {
  project(id: $id) {
    id name description createdAt
    videos(first: 10) { totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } }
  }
}
"""

PROJECTS = """
query Projects($first: Int, $after: String) {
  projects(first: $first, after: $after) {
    totalCount edges { cursor node { id name } } pageInfo { hasNextPage endCursor }
  }
}
"""

CREATE_STORY = """
mutation CreateStory($input: CreateStoryInput!) {
  createStory(input: $input) { id title paragraphs project { id } }
}
"""

UPDATE_STORY = """
mutation UpdateStory($id: ID!, $input: UpdateStoryInput!) {
  updateStory(id: $id, input: $input) { id title paragraphs project { id } }
}
"""

DELETE_STORY = "mutation DeleteStory($id: ID!) { deleteStory(id: $id) }"

STORY = """
query Story($id: ID!) {
  story(id: $id) {
    id title paragraphs project { id }
    videos(first: 10) { totalCount edges { node { id paragraphIndex } } }
  }
}
"""

STORIES = """
query Stories($first: Int, $after: String, $projectId: ID) {
  stories(first: $first, after: $after, projectId: $projectId) {
    totalCount edges { cursor node { id title } } pageInfo { hasNextPage endCursor }
  }
}
"""

GENERATE_VIDEO = f"""
mutation GenerateVideo($input: GenerateVideoInput!) {{
  generateVideo(input: $input) {{ {VIDEO_FIELDS} }}
}}
"""

VIDEO = f"""
query Video($id: ID!) {{ video(id: $id) {{ {VIDEO_FIELDS} }} }}
"""

VIDEOS = f"""
query Videos($first: Int, $after: String, $filter: VideoFilter) {{
  videos(first: $first, after: $after, filter: $filter) {{
    totalCount
    edges {{ cursor node {{ {VIDEO_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

VIDEO_IDS = """
query VideoIds($first: Int, $after: String, $filter: VideoFilter) {
  videos(first: $first, after: $after, filter: $filter) {
    totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor }
  }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Video { prompt }
    ... on Project { name }
    ... on Story { title }
    ... on Tag { name }
    ... on Theme { name }
    ... on User { email }
  }
}
"""

TAGS_AND_THEMES = "query { tags { id name } themes { id name } }"

UPDATE_VIDEO = """
mutation UpdateVideo($id: ID!, $input: UpdateVideoInput!) {
  updateVideo(id: $id, input: $input) { id caption videoStyle theme { name } tags { name } version }
}
"""

CANCEL_VIDEO = "mutation CancelVideo($id: ID!) { cancelVideo(id: $id) { id status } }"
RETRY_VIDEO = "mutation RetryVideo($id: ID!) { retryVideo(id: $id) { id status retryCount } }"
DELETE_VIDEO = "mutation DeleteVideo($id: ID!) { deleteVideo(id: $id) { id status deletedAt } }"
RESTORE_VIDEO = "mutation RestoreVideo($id: ID!) { restoreVideo(id: $id) { id deletedAt } }"


def error_codes(body: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def only_error(body: dict) -> dict:
    """The single error of a response (fails when there is not exactly one)."""
    errors = body.get("errors") or []
    assert len(errors) == 1, body
    return errors[0]
