"""Where media files live: a storage interface (:mod:`.base`) and its two backends, a local
folder (:mod:`.local`) and any S3-compatible object store (:mod:`.s3`), chosen by
``VIDGEN_STORAGE_URL`` (:mod:`.location`). Keys are made and checked in :mod:`.keys`."""

from vidgen.media.storage.base import (
    InvalidKey,
    Staging,
    Storage,
    StorageError,
    StorageUnavailable,
    StoredObject,
    TooLarge,
)
from vidgen.media.storage.keys import (
    KEY_PATTERN,
    MAX_KEY_LENGTH,
    content_type,
    is_valid_key,
    make_key,
    validate_key,
)
from vidgen.media.storage.local import TMP_DIR_NAME, LocalStaging, LocalStorage
from vidgen.media.storage.location import Location, create_storage, parse_location

__all__ = [
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "TMP_DIR_NAME",
    "InvalidKey",
    "LocalStaging",
    "LocalStorage",
    "Location",
    "Staging",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "TooLarge",
    "content_type",
    "create_storage",
    "is_valid_key",
    "make_key",
    "parse_location",
    "validate_key",
]
