"""Small objects written only if they are as the writer last read them (the sweep's lease): create one
only where none exists, replace or delete one only where it is still the version read.

- local disk: create is a hard link of a whole temporary file (link(2) fails where the name exists);
  create, replace and delete compare and act under an exclusive flock(2) on `_<name>.lock` beside it.
- S3: PutObject with `If-None-Match: *` (create) and `If-Match: <ETag>` (replace), DeleteObject with
  `If-Match`, through boto3 (pyarrow exposes neither).
- GCS: uploads with `ifGenerationMatch=0` (create) and `ifGenerationMatch=<generation>` (replace), deletes
  with `ifGenerationMatch`, through google-cloud-storage.
- anything else: `conditional` is False, and the caller falls back to plain atomic writes read back after
  a pause (reconent.sweep.lease).

A version is an opaque string: the object's sha256 on local disk, its ETag on S3, its generation on GCS."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import uuid

import pyarrow.fs as pafs

from .layout import fs_options


class Objects:
    """Conditional small objects under the sweep's root (needs Layout)."""

    @property
    def conditional(self) -> bool:
        """This storage offers create-if-absent and compare-and-swap (local disk, S3, GCS)."""
        return isinstance(self.fs, (pafs.LocalFileSystem, pafs.S3FileSystem, pafs.GcsFileSystem))

    def put_object(self, name: str, data: bytes) -> None:
        """Write `data` as <root>/<name>, atomically but unconditionally."""
        self._put(self.root, name, data)

    def remove_object(self, name: str) -> None:
        """Delete <root>/<name> unconditionally (where the storage has no conditional delete)."""
        self.fs.delete_file(self.path(name))

    def read_object(self, name: str) -> tuple[bytes, str] | None:
        """(bytes, version) of <root>/<name>, or None where there is none. Any other failure raises."""
        if isinstance(self.fs, pafs.S3FileSystem):
            from botocore.exceptions import ClientError

            bucket, key = self._s3_key(name)
            try:
                got = self._s3().get_object(Bucket=bucket, Key=key)
            except ClientError as e:  # (each client has its own NoSuchKey class: match the code)
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            return got["Body"].read(), got["ETag"]
        if isinstance(self.fs, pafs.GcsFileSystem):
            from google.api_core.exceptions import NotFound

            blob = self._gcs_blob(name)
            try:
                with _gcs_errors(self.path(name)):
                    data = blob.download_as_bytes()
            except NotFound:
                return None
            return data, str(blob.generation)  # the generation of the bytes read (x-goog-generation)
        try:
            with self.fs.open_input_stream(self.path(name)) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def create_object(self, name: str, data: bytes) -> str | None:
        """Write <root>/<name> only if it does not exist; its version, or None where one exists already."""
        if isinstance(self.fs, pafs.S3FileSystem):
            bucket, key = self._s3_key(name)
            return self._s3_conditional(lambda c: c.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*"))
        if isinstance(self.fs, pafs.GcsFileSystem):
            return self._gcs_upload(name, data, 0)  # generation 0: there is no live object
        self._local_only()
        with self._locked(name):
            tmp = self._local_tmp(name, data)
            try:
                os.link(tmp, self.path(name))  # atomic, and fails where the name exists
            except FileExistsError:
                return None
            finally:
                os.unlink(tmp)
        return hashlib.sha256(data).hexdigest()

    def replace_object(self, name: str, data: bytes, version: str) -> str | None:
        """Replace <root>/<name> only if it is still at `version`; its new version, or None where it is not."""
        if isinstance(self.fs, pafs.S3FileSystem):
            bucket, key = self._s3_key(name)
            return self._s3_conditional(lambda c: c.put_object(Bucket=bucket, Key=key, Body=data, IfMatch=version))
        if isinstance(self.fs, pafs.GcsFileSystem):
            return self._gcs_upload(name, data, int(version))
        self._local_only()
        with self._locked(name):
            cur = self.read_object(name)
            if cur is None or cur[1] != version:
                return None
            os.replace(self._local_tmp(name, data), self.path(name))
        return hashlib.sha256(data).hexdigest()

    def delete_object(self, name: str, version: str) -> bool:
        """Delete <root>/<name> only if it is still at `version`; whether it was deleted."""
        if isinstance(self.fs, pafs.S3FileSystem):
            bucket, key = self._s3_key(name)
            return self._s3_conditional(lambda c: c.delete_object(Bucket=bucket, Key=key, IfMatch=version)) \
                is not None
        if isinstance(self.fs, pafs.GcsFileSystem):
            from google.api_core.exceptions import NotFound, PreconditionFailed

            try:
                with _gcs_errors(self.path(name)):
                    self._gcs_blob(name).delete(if_generation_match=int(version))
            except (NotFound, PreconditionFailed):
                return False
            return True
        self._local_only()
        with self._locked(name):
            cur = self.read_object(name)
            if cur is None or cur[1] != version:
                return False
            os.unlink(self.path(name))
        return True

    # ------------------------------------------------------------------ local disk
    def _local_only(self) -> None:
        if not isinstance(self.fs, pafs.LocalFileSystem):
            raise NotImplementedError(f"no conditional writes on {self.fs.type_name} storage ({self.uri})")

    def _local_tmp(self, name: str, data: bytes) -> str:
        os.makedirs(self.root, exist_ok=True)
        tmp = self.path(f"_tmp-{name}-{uuid.uuid4().hex[:12]}")
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _locked(self, name: str):
        """An exclusive flock(2) on `_<name>.lock` beside the object (the lock file stays: `_`, invisible)."""
        from filelock import UnixFileLock

        os.makedirs(self.root, exist_ok=True)
        return UnixFileLock(self.path(f"_{name.lstrip('_')}.lock"))

    # ------------------------------------------------------------------ S3
    def _s3(self):
        """A boto3 client for the bucket pyarrow reaches: the same endpoint, region and keys."""
        o = fs_options(self.fs)
        endpoint = o.get("endpoint_override") or None
        if endpoint and "://" not in endpoint:
            endpoint = f"{o.get('scheme') or 'https'}://{endpoint}"
        return _s3_client(endpoint, o.get("region") or None, o.get("access_key") or None,
                          o.get("secret_key") or None, o.get("session_token") or None)

    def _s3_key(self, name: str) -> tuple[str, str]:
        bucket, _, key = self.path(name).partition("/")
        return bucket, key

    def _s3_conditional(self, call) -> str | None:
        """The ETag `call` returns, or None where S3 refused it for a failed condition (412, or 409 for a
        conditional write that raced another) or found no object (404)."""
        from botocore.exceptions import ClientError

        try:
            out = call(self._s3())
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 409, 412):
                return None
            raise
        return out.get("ETag", "")

    # ------------------------------------------------------------------ GCS
    def _gcs_blob(self, name: str):
        """The object <root>/<name> through google-cloud-storage, on the endpoint and identity pyarrow uses."""
        o = fs_options(self.fs)
        endpoint = o.get("endpoint_override") or None
        if endpoint and "://" not in endpoint:
            endpoint = f"{o.get('scheme') or 'https'}://{endpoint}"
        bucket, _, key = self.path(name).partition("/")
        return _gcs_client(endpoint, bool(o.get("anonymous")), o.get("project_id") or None).bucket(bucket).blob(key)

    def _gcs_upload(self, name: str, data: bytes, generation: int) -> str | None:
        """Upload only if the object's live generation is `generation` (0: none); its new generation, or None
        where GCS refused it (412; 404 too, should the object be gone)."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self._gcs_blob(name)
        try:
            with _gcs_errors(self.path(name)):
                blob.upload_from_string(data, content_type="application/json", if_generation_match=generation)
        except PreconditionFailed:
            return None
        except NotFound:
            if generation == 0:  # nothing to compare with: the bucket itself is missing
                raise
            return None
        return str(blob.generation)


@contextlib.contextmanager
def _gcs_errors(path: str):
    """NotFound and PreconditionFailed pass (the callers' answers); any other failure of the GCS API (denied,
    throttled, a server error) becomes an OSError naming the object, as pyarrow's errors are."""
    from google.api_core.exceptions import GoogleAPICallError, NotFound, PreconditionFailed

    try:
        yield
    except (NotFound, PreconditionFailed):
        raise
    except GoogleAPICallError as e:
        raise OSError(f"gs://{path}: {e}") from e


_GCS = threading.local()  # google-cloud-storage's clients are not documented as thread-safe: one per thread


def _gcs_client(endpoint, anonymous, project):
    """A google-cloud-storage client on pyarrow's endpoint (else Google's; an emulator's comes from
    STORAGE_EMULATOR_HOST through layout.filesystem) with Application Default Credentials unless anonymous."""
    clients = _GCS.__dict__.setdefault("clients", {})
    key = (endpoint, anonymous, project)
    if key not in clients:
        from google.cloud import storage

        kw = {"client_options": {"api_endpoint": endpoint}} if endpoint else {}
        if anonymous:
            from google.auth.credentials import AnonymousCredentials

            kw["credentials"] = AnonymousCredentials()
        # project=None: objects need none, and looking one up can fail where buckets are reachable
        clients[key] = storage.Client(project=project, **kw)
    return clients[key]


_CLIENT_LOCK = threading.Lock()


def _s3_client(*args):
    with _CLIENT_LOCK:  # built once, even by threads that ask at the same moment
        return _new_s3_client(*args)


@functools.lru_cache(maxsize=8)
def _new_s3_client(endpoint, region, access_key, secret_key, session_token):
    """One client per endpoint and identity: building one loads botocore's service model (~1 s of CPU);
    clients are thread-safe."""
    import boto3

    keys = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key,
            "aws_session_token": session_token}
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                          **{k: v for k, v in keys.items() if v})
