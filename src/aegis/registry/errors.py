"""Model supply-chain and registry exceptions, each with a stable ``code`` (see
``aegis.core.errors``)."""

from __future__ import annotations

from aegis.core.errors import AegisError, Conflict, Forbidden, NotFound


class RegistryError(AegisError):
    """A model could not be built, signed, verified or unpacked."""

    code = "registry_error"
    status_code = 400


class SignatureInvalid(RegistryError):
    """The signature does not match the content (wrong file, tampered, or malformed)."""

    code = "signature_invalid"
    status_code = 422


class UntrustedKey(RegistryError):
    """The signature is valid, but for a key that is not in the trusted key set."""

    code = "untrusted_key"
    status_code = 422


class NoTrustedKeys(RegistryError):
    """No trusted public key is configured, so nothing can be verified (fail closed)."""

    code = "no_trusted_keys"
    status_code = 500


class KeyInvalid(RegistryError):
    """A key file cannot be read: bad PEM, unsupported algorithm or curve."""

    code = "key_invalid"
    status_code = 400


class KeyPasswordInvalid(KeyInvalid):
    """The password does not decrypt the private key."""

    code = "key_password_invalid"


class ArchiveUnsafe(RegistryError):
    """The archive holds something Aegis refuses to unpack (traversal, links, bombs, pickle)."""

    code = "archive_unsafe"
    status_code = 422


class ArchiveCorrupt(RegistryError):
    """The archive cannot be read: truncated or malformed gzip or tar data."""

    code = "archive_corrupt"
    status_code = 422


class ManifestMismatch(RegistryError):
    """``manifest.json`` is missing, malformed, or disagrees with the archive's members."""

    code = "manifest_mismatch"
    status_code = 422


class ModelSourceInvalid(RegistryError):
    """The model directory cannot be packaged (links, special files, reserved names)."""

    code = "model_source_invalid"
    status_code = 400


class ModelCacheUnwritable(RegistryError):
    """The loader cannot write the model to its cache folder (disk full, permissions)."""

    code = "model_cache_unwritable"
    status_code = 500


# --- the registry's records (aegis.registry.catalog) ---------------------------------------------


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelExists(Conflict):
    code = "model_exists"


class ModelLocationTaken(Conflict):
    code = "model_location_taken"


class PromotionConflict(Conflict):
    code = "promotion_conflict"


class FourEyesRequired(Forbidden):
    code = "four_eyes_required"
