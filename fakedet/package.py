"""Open, verify and (atomically) write model packages.

A package is a directory `NAME.fdet/` with `manifest.json` and the artifact files
it lists, optionally zipped. A bare `.onnx` file whose metadata carries a manifest
opens as a one-artifact package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .atomic import atomic_write_text, replace_dir, sha256_file, staging_dir
from .errors import ManifestError, PackageError, first_line
from .manifest import ONNX_KINDS, Artifact, Manifest
from .artifact_kinds import ONNX_EXTERNAL_DATA, ONNX_FP32
from .onnx_refs import external_files
from .package_zip import MANIFEST_FILE, unzip_listed
from .safe_json import read_text
from .tempdirs import owned_dir

ONNX_METADATA_KEY = "fakedet.manifest"
TWO_GB = 2**31 - 2**20  # protobuf's limit on one ONNX file, less room for the graph


class ModelPackage:
    """A read-only view of a package on disk."""

    def __init__(self, root: Path, manifest: Manifest, source: Path, cleanup: Path | None = None):
        self.root = Path(root)
        self.manifest = manifest
        self.source = Path(source)
        self._cleanup = cleanup
        self._verified: set[str] = set()
        self._verifying: set[str] = set()

    # ---- opening ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> "ModelPackage":
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise PackageError(path, "no such file or directory") from None
        except OSError as e:
            raise PackageError(path, f"cannot be read ({first_line(e)})") from None
        if stat.S_ISDIR(st.st_mode):
            return cls._open_dir(path, path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise PackageError(path, "not a regular file or directory")
        if zipfile.is_zipfile(path):
            return cls._open_zip(path)
        if path.suffix.lower() == ".onnx":
            return cls._open_bare_onnx(path)
        raise PackageError(path, "not a model package (expected a NAME.fdet directory, a zipped package or an .onnx file)")

    @staticmethod
    def _inside(root: Path, rel: str, source: Path, what: str) -> Path:
        """root/rel, refused when a symlink on the way leads outside the package."""
        p = root / rel
        try:
            p.resolve().relative_to(root.resolve())
        except ValueError:
            raise PackageError(source, f"{what} '{rel}' is a link leading outside the package") from None
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise PackageError(source, f"{what} '{rel}' cannot be resolved ({first_line(e)})") from None
        return p

    @classmethod
    def _open_dir(cls, root: Path, source: Path, cleanup: Path | None = None) -> "ModelPackage":
        try:
            mf = cls._inside(root, MANIFEST_FILE, source, "the manifest")
            if not mf.is_file():
                raise PackageError(source, f"no {MANIFEST_FILE} (not a fakedet package, or an interrupted write)")
            try:
                manifest = Manifest.from_json(read_text(mf), where=MANIFEST_FILE)
            except ManifestError as e:
                raise PackageError(source, str(e).replace(f"{mf}: ", f"{MANIFEST_FILE}: ")) from None
            if manifest.takes_captions:
                try:
                    manifest.tokenizer_artifact()
                except ManifestError as e:
                    raise PackageError(source, f"{MANIFEST_FILE}: {e}") from None
            for art in manifest.artifacts:
                if not cls._inside(root, art.file, source, "artifact").is_file():
                    raise PackageError(source, f"artifact '{art.file}' ({art.kind}) listed in the manifest is missing")
        except BaseException:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise
        return cls(root, manifest, source, cleanup)

    @classmethod
    def _open_zip(cls, path: Path) -> "ModelPackage":
        tmp = owned_dir("fakedet-pkg-")
        try:
            root = unzip_listed(path, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls._open_dir(root, path, cleanup=tmp)

    @classmethod
    def _open_bare_onnx(cls, path: Path) -> "ModelPackage":
        refs = external_files(path)
        if refs:
            raise PackageError(
                path,
                f"keeps tensors in other files ({', '.join(refs[:3])}) that a bare .onnx cannot hash-check; "
                f"wrap it into a package: fakedet package {path.name} --input-spec SPEC.json -o NAME.fdet",
            )
        text = read_onnx_manifest(path)
        if text is None:
            raise PackageError(
                path,
                "this ONNX file carries no fakedet manifest; wrap it first: "
                f"fakedet package {path.name} --input-spec SPEC.json -o NAME.fdet",
            )
        try:
            manifest = Manifest.from_json(text, where=f"{ONNX_METADATA_KEY} metadata")
        except ManifestError as e:
            raise PackageError(path, str(e)) from None
        if manifest.takes_captions:
            raise PackageError(path, "a caption-aware model: its tokenizer lives in the package, so open the "
                                     "package (NAME.fdet), not its bare .onnx file")
        kind = manifest.provenance.get("onnx_kind", ONNX_FP32)
        if kind not in ONNX_KINDS:
            raise PackageError(path, f"{ONNX_METADATA_KEY} metadata: provenance.onnx_kind '{kind}' is not an ONNX kind")
        manifest.artifacts = [Artifact(file=path.name, kind=kind, sha256=sha256_file(path), size=path.stat().st_size)]
        pkg = cls(path.parent, manifest, path)
        pkg._verified.add(path.name)
        return pkg

    # ---- use -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    def path_of(self, artifact: Artifact, verify: bool = True) -> Path:
        p = self.root / artifact.file
        if verify:
            self.verify_artifact(artifact)
        return p

    def verify_artifact(self, artifact: Artifact) -> None:
        if artifact.file in self._verified:
            return
        p = self.root / artifact.file
        if not p.is_file():
            raise PackageError(self.source, f"artifact '{artifact.file}' is missing")
        digest = sha256_file(p)
        if digest != artifact.sha256:
            raise PackageError(
                self.source,
                f"artifact '{artifact.file}' does not match its sha256 in the manifest "
                f"(expected {artifact.sha256[:12]}..., found {digest[:12]}...): the file was changed or damaged",
            )
        if artifact.kind in ONNX_KINDS and artifact.file not in self._verifying:
            self._verifying.add(artifact.file)  # an ONNX file naming another as its data: no loop
            try:
                self._verify_external_data(artifact, p)
            finally:
                self._verifying.discard(artifact.file)
        self._verified.add(artifact.file)

    def _verify_external_data(self, artifact: Artifact, path: Path) -> None:
        """ONNX Runtime reads an ONNX file's external-data files by itself: each must be an
        artifact of this package (so its sha256 is checked), or the model is refused."""
        listed = {a.file: a for a in self.manifest.artifacts}
        base = PurePosixPath(artifact.file).parent
        for loc in external_files(path):
            parts = PurePosixPath(loc.replace("\\", "/")).parts
            rel = str(base.joinpath(*parts)) if parts and ".." not in parts and not loc.startswith(("/", "\\")) else None
            if rel is None or rel not in listed:
                raise PackageError(
                    self.source,
                    f"artifact '{artifact.file}' reads external data '{loc}' that the manifest does not list with a "
                    f"sha256; refusing it (re-create the package with fakedet package or fakedet export)",
                )
            self.verify_artifact(listed[rel])

    def verify(self) -> None:
        for art in self.manifest.artifacts:
            self.verify_artifact(art)

    def onnx_artifacts(self) -> list[Artifact]:
        return self.manifest.artifacts_of(*ONNX_KINDS)

    def close(self) -> None:
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


class PackageWriter:
    """Builds a package in a staging directory beside the destination and puts it in
    place in one step on commit. Until then the destination is untouched; if the
    process dies, only a hidden `.NAME.fdet.*.staging` directory is left, never a
    partial package.

    Use as a context manager:

        with PackageWriter(dest, manifest) as w:
            w.add_file(src, "model.onnx", "onnx-fp32")
        # committed here; an exception inside the block discards everything

    `base` (an existing package) starts from its files and manifest: unchanged
    files are hard-linked, so an update (calibrate, build) costs no copies.
    """

    def __init__(self, dest: str | os.PathLike, manifest: Manifest, base: ModelPackage | None = None):
        self.dest = Path(dest)
        self.manifest = manifest.copy()
        self.stage = staging_dir(self.dest)
        self._committed = False
        if base is not None:
            for art in base.manifest.artifacts:
                if art.file in {a.file for a in self.manifest.artifacts}:
                    self._link_or_copy(base.root / art.file, self.stage / art.file)

    @staticmethod
    def _link_or_copy(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    def staged_path(self, name: str) -> Path:
        """A path inside the staging directory to write an artifact to directly."""
        p = self.stage / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            p.unlink()  # may be a hard link to the base package's file: never write through it
        return p

    def add_file(self, src: str | os.PathLike | None, name: str, kind: str, **attrs) -> Artifact:
        """Register an artifact. With `src`, copy it in; without, `name` must already
        have been written to staged_path(name)."""
        target = self.stage / name
        if src is not None:
            target = self.staged_path(name)
            shutil.copyfile(src, target)
        if not target.is_file():
            raise PackageError(self.dest, f"artifact '{name}' was never written")
        art = Artifact(file=name, kind=kind, sha256=sha256_file(target), size=target.stat().st_size, attrs=attrs)
        art.validate()
        self.manifest.put_artifact(art)
        return art

    def add_onnx(self, proto, name: str, kind: str, external: bool = False, **attrs) -> Artifact:
        """Save an in-memory onnx.ModelProto as artifact `name`. A model over 2 GB (or one
        that came with external data) keeps its tensors in `<name>.data`, registered as an
        artifact too, so its sha256 is checked like the model's own."""
        import onnx

        target = self.staged_path(name)
        try:
            big = proto.ByteSize() > TWO_GB
        except Exception:  # protobuf cannot even size it
            big = True
        if external or big:
            data = f"{name}.data"
            self.staged_path(data)
            onnx.save(proto, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=PurePosixPath(data).name, size_threshold=0)  # fmt: skip
            self.add_file(None, data, ONNX_EXTERNAL_DATA, of=name)
        else:
            onnx.save(proto, str(target))
        return self.add_file(None, name, kind, **attrs)

    def remove(self, name: str) -> None:
        self.manifest.artifacts = [a for a in self.manifest.artifacts if a.file != name]
        with contextlib.suppress(FileNotFoundError):
            (self.stage / name).unlink()

    def commit(self) -> Path:
        atomic_write_text(self.stage / MANIFEST_FILE, self.manifest.to_json())
        replace_dir(self.stage, self.dest)
        self._committed = True
        return self.dest

    def abort(self) -> None:
        if not self._committed:
            shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def read_onnx_manifest(path: str | os.PathLike) -> str | None:
    """The fakedet manifest JSON embedded in an ONNX file's metadata_props, or None.

    Uses onnxruntime (always present in the runtime) so the runtime never needs onnx."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types
        raise PackageError(path, f"not a loadable ONNX model ({first_line(e)})") from None
    return sess.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)


def embed_manifest(model, manifest: Manifest, onnx_kind: str) -> None:
    """Write the manifest (without the artifact list, which would name the file's own
    hash) into an in-memory onnx.ModelProto's metadata_props."""
    d = manifest.to_dict(with_artifacts=False)
    d["provenance"] = dict(d["provenance"], onnx_kind=onnx_kind)
    text = json.dumps(d, sort_keys=False)
    props = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    for p in props:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=text)
