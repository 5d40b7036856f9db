"""The GraphQL types, one module per part of the domain; their names, for the roots.

- :mod:`.video`: ``Video`` (the row is also the job), ``StatusChange``, ``VideoConnection``,
  the video inputs and ``VideoFilter``;
- :mod:`.catalog`: ``Project``, ``Story``, ``Tag``, ``Theme``, their connections and inputs;
- :mod:`.user`: ``User``, ``AuthPayload`` and the sign-in inputs;
- :mod:`.limits`: ``User.limits`` and ``User.usage``, ``setUserLimits``'s input;
- :mod:`.provider`: ``ProviderInfo``;
- :mod:`.webhooks`: ``WebhookDelivery`` (a video's outgoing webhook events);
- :mod:`.enums`: ``VideoStatus``, ``OutputFormat``, ``VideoKind`` and ``Transition``;
- :mod:`.ids`: global ids read back (``decode_id``);
- :mod:`.connections` and :mod:`.rows`: what the connections and the row-backed types share.

Resolvers receive ORM rows as ``root`` (``models.Video`` for ``Video``...); relations go
through the operation's loaders. The roots (:mod:`vidgen.graphql.queries`,
:mod:`~vidgen.graphql.mutations`, :mod:`~vidgen.graphql.subscriptions`) name these types as
``types.Video``, ``types.Project``...: the GraphQL type, never the model.
"""

from vidgen.graphql.types.catalog import (
    CreateProjectInput,
    CreateStoryInput,
    Project,
    ProjectConnection,
    Story,
    StoryConnection,
    Tag,
    Theme,
    UpdateProjectInput,
    UpdateStoryInput,
)
from vidgen.graphql.types.connections import fetch_page
from vidgen.graphql.types.enums import (
    OutputFormatEnum,
    TransitionEnum,
    VideoKindEnum,
    VideoStatusEnum,
)
from vidgen.graphql.types.ids import decode_id, parse_global_id, require_id
from vidgen.graphql.types.limits import UserLimitsInput
from vidgen.graphql.types.provider import ProviderInfo
from vidgen.graphql.types.user import AuthPayload, LoginInput, RegisterInput, User
from vidgen.graphql.types.video import (
    GenerateVideoInput,
    RenderStoryInput,
    StatusChange,
    UpdateVideoInput,
    Video,
    VideoConnection,
    VideoFilter,
    video_connection,
)

__all__ = [
    "AuthPayload",
    "CreateProjectInput",
    "CreateStoryInput",
    "GenerateVideoInput",
    "LoginInput",
    "OutputFormatEnum",
    "Project",
    "ProjectConnection",
    "ProviderInfo",
    "RegisterInput",
    "RenderStoryInput",
    "StatusChange",
    "TransitionEnum",
    "VideoKindEnum",
    "Story",
    "StoryConnection",
    "Tag",
    "Theme",
    "UpdateProjectInput",
    "UpdateStoryInput",
    "UpdateVideoInput",
    "User",
    "UserLimitsInput",
    "Video",
    "VideoConnection",
    "VideoFilter",
    "VideoStatusEnum",
    "decode_id",
    "fetch_page",
    "parse_global_id",
    "require_id",
    "video_connection",
]
