"""Signed C2PA provenance (Content Credentials) on every edited PNG, and `facepaint verify`.

    png = sign_png(png_with_provenance, provenance)     # what provenance.png_bytes does for every output
    report = verify("edited.png")                       # what `facepaint verify edited.png` prints
    report.ok, report.problems, report.lines()

Each edited PNG carries, besides its provenance text chunk, a C2PA manifest (the c2pa-python library) whose
claim says what was edited: a `c2pa.actions.v2` assertion (the photo opened as the parent ingredient, then
`c2pa.edited` by facepaint with IPTC's digital source type "composite with trained algorithmic media", the
prompt, model, artifact version and face regions as its parameters) and the whole provenance (as its JSON
text) in the assertion `facepaint.edit`. The claim's hard binding is C2PA's data hash over every byte of the
file outside the manifest, so a changed pixel, a changed text chunk or a re-encoded image no longer verifies.

The key. C2PA validators reject a bare self-signed end-entity certificate, so on first use a local CA and
an ES256 (P-256) signing certificate issued by it (keyUsage digitalSignature, extendedKeyUsage
emailProtection, as C2PA's certificate profile asks) are made in `key_dir()`: `--c2pa-dir`, else
$FACEPAINT_C2PA_DIR, else $XDG_CONFIG_HOME/facepaint/c2pa (~/.config/facepaint/c2pa). It holds `ca.pem` (the
trust anchor `verify` uses), `signer.pem` (the signing certificate and the CA's) and `signer.key` (mode
0600; a key readable by others is refused, as ssh does). The CA's own private key is discarded once the
signing certificate is issued, so nothing else can ever be issued under that CA and `signer.key` is the only
secret. Creation holds a file lock in the directory and writes each file atomically, `ca.pem` last: it marks
a complete set, so two processes starting at once make one key, and a crash mid-creation leaves a set that
the next run remakes before anything is signed with it. Both certificates are valid for ten years; to
rotate the key, delete the directory (files signed before then verify only against a copy of the old
ca.pem, `--c2pa-dir`).

Offline by design: no timestamp authority (the signature carries no trusted time, so a file verifies while
the certificate is valid), no OCSP, no remote manifests, no thumbnail (it would re-encode the edited photo
into the manifest).

Verification (`verify`) reads the manifest with this directory's `ca.pem` as the only trust anchor
and passes when the manifest is found, its signature validates, the signer chains to that CA, the data
hash matches, the claim is facepaint's, and, when the provenance says the faces were watermarked, the mark
is detected in each recorded face region. Anything else is a problem named in `problems`.

Why an edit fails when it cannot sign (rather than writing an unsigned PNG): the promise is that every
edited image carries a signed manifest, and an unsigned output would be indistinguishable from one whose
manifest was stripped. c2pa-python is a runtime dependency, so a missing library is a broken install;
signing is turned off explicitly (`facepaint edit --no-sign`, `sign=False` in `EditResult.save`).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import facepaint
from facepaint.common.errors import FacepaintError
from facepaint.common.io import atomic_path
from facepaint.editing import watermark as wm

DIR_ENV = "FACEPAINT_C2PA_DIR"
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "signer.pem", "signer.key"
ASSERTION = "facepaint.edit"  # the label of the assertion holding the whole provenance
# IPTC's digital source type for a photo that a generative model partly regenerated
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
VALID_YEARS = 10
MIME = "image/png"
# what a valid, trusted claim reports; the failures `verify` explains in its own words
REQUIRED = ("claimSignature.validated", "signingCredential.trusted", "assertion.dataHash.match")
EXPLAINED = ("assertion.dataHash.mismatch", "signingCredential.untrusted")
# Offline: no remote manifests, no OCSP; no thumbnail (a re-encoded copy of the photo inside the manifest)
OFFLINE = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": False}},
}


class SigningError(FacepaintError):
    """Signing is impossible (c2pa-python missing, an unusable key directory); the message says what to do."""


def _c2pa():
    try:
        import c2pa
    except ImportError as e:  # a broken install: c2pa-python is a runtime dependency
        raise SigningError(
            f"cannot sign the output: the c2pa-python library does not import ({e}); install it with "
            f"`pip install c2pa-python`, or turn signing off (`facepaint edit --no-sign`)"
        ) from e
    return c2pa


# ------------------------------------------------------------------------------------------ the key


def key_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the signing key lives: `path`, else $FACEPAINT_C2PA_DIR, else $XDG_CONFIG_HOME/facepaint/c2pa
    (~/.config/facepaint/c2pa)."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "facepaint" / "c2pa"


@dataclass(frozen=True)
class Credentials:
    """A key directory's contents, checked: the CA (trust anchor), the signing chain and key (PEM)."""

    dir: Path
    ca_pem: bytes
    chain_pem: bytes  # the signing certificate, then the CA's
    key_pem: bytes
    signer: str  # the signing certificate's subject, for messages
    serial: int


_REMAKE = (
    "delete the directory to make a new key (files signed with the old one then verify only against a copy of "
    "its ca.pem)"
)
_cache: dict = {}  # (dir, the key file's inode and mtime) -> Credentials


def credentials(path: str | os.PathLike | None = None) -> Credentials:
    """The key directory's credentials, made on first use (see the module docstring). SigningError for a
    directory that cannot be used, naming it and saying what to do."""
    d = key_dir(path)
    if not (d / CA_FILE).is_file():  # ca.pem is written last: without it the set is (re)made, under the lock
        from filelock import FileLock, Timeout

        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            with FileLock(str(d / ".lock"), timeout=60):
                if not (d / CA_FILE).is_file():
                    _create(d)
        except Timeout:
            raise SigningError(f"C2PA key directory {d}: another process holds {d / '.lock'} for over 60 s") from None
        except OSError as e:
            raise SigningError(
                f"cannot create the C2PA signing key in {d}: {e}; choose a writable directory with --c2pa-dir "
                f"or ${DIR_ENV}"
            ) from e
    try:
        st = (d / KEY_FILE).stat()
    except OSError as e:
        raise SigningError(f"C2PA key directory {d} has ca.pem but no readable {KEY_FILE} ({e}): {_REMAKE}") from e
    if st.st_mode & 0o077:
        raise SigningError(
            f"the C2PA signing key {d / KEY_FILE} is readable by others (mode {st.st_mode & 0o777:o}): "
            f"run `chmod 600 {d / KEY_FILE}`"
        )
    key = (str(d.resolve()), st.st_ino, st.st_mtime_ns)
    if key not in _cache:
        _cache[key] = _load(d)
    return _cache[key]


def check(path: str | os.PathLike | None = None) -> Credentials:
    """SigningError unless this process can sign: c2pa-python imports and the key directory is usable (made
    on first use). What `facepaint edit` calls before loading any model."""
    _c2pa()
    return credentials(path)


def _create(d: Path) -> None:
    """A local CA and an ES256 signing certificate issued by it, into `d` (the CA's key is not kept)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365 * VALID_YEARS)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    tag = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest.hex()[:8]  # tells machines apart

    def name(cn):
        return x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facepaint"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        )

    def usage(sign, cert_sign):
        flags = dict.fromkeys(
            (
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(digital_signature=sign, key_cert_sign=cert_sign, crl_sign=cert_sign, **flags)

    ca_name = name(f"facepaint local CA {tag}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"facepaint local signer {tag}"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        d / KEY_FILE, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    for fname, data in ((CERT_FILE, cert.public_bytes(pem) + ca.public_bytes(pem)), (CA_FILE, ca.public_bytes(pem))):
        with atomic_path(d / fname) as tmp:
            tmp.write_bytes(data)


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` atomically with mode 0600 from its first byte (mkstemp's mode, kept)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load(d: Path) -> Credentials:
    """Read and check a key directory: the key matches the signing certificate, which the CA issued and
    which is valid now."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    try:
        ca_pem, chain_pem, key_pem = ((d / f).read_bytes() for f in (CA_FILE, CERT_FILE, KEY_FILE))
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificates(chain_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError) as e:
        raise SigningError(f"C2PA key directory {d} cannot be read ({e}): {_REMAKE}") from e
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise SigningError(f"C2PA key directory {d}: {KEY_FILE} is not the key of {CERT_FILE}: {_REMAKE}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise SigningError(f"C2PA key directory {d}: {CERT_FILE} was not issued by {CA_FILE}: {_REMAKE}") from e
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningError(
            f"C2PA signing certificate {d / CERT_FILE} is valid from {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not now: {_REMAKE}"
        )
    return Credentials(d, ca_pem, chain_pem, key_pem, cert.subject.rfc4514_string(), cert.serial_number)


def _context(c2pa, ca_pem: bytes | None):
    """A c2pa Context: offline, trusting `ca_pem` (our CA) and no other anchor, so that "trusted" means issued
    by the facepaint CA of this key directory."""
    settings = json.loads(json.dumps(OFFLINE))
    if ca_pem is not None:
        settings["trust"] = {"trust_anchors": ca_pem.decode()}
    return c2pa.Context.from_dict(settings)


# ------------------------------------------------------------------------------------------ signing


def manifest(provenance: dict, title: str) -> dict:
    """The manifest definition of an edited photo: what was edited, by which model, with which prompt."""
    prov = json.loads(json.dumps(provenance))  # plain JSON (tuples as lists), as the text chunk holds it
    faces = prov.get("faces") or []
    which = ", ".join("the masked region" if f.get("index") is None else f"face {f['index']}" for f in faces)
    return {
        "claim_generator_info": [{"name": "facepaint", "version": facepaint.__version__}],
        "title": title,
        "format": MIME,
        "ingredients": [{"title": str(prov.get("source") or "photo"), "relationship": "parentOf", "label": "photo"}],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["photo"]}},
                        {
                            "action": "c2pa.edited",
                            "digitalSourceType": SOURCE_TYPE,
                            "softwareAgent": {"name": "facepaint", "version": facepaint.__version__},
                            "description": f"regenerated {which or 'the face'} to match the prompt",
                            "parameters": {
                                "prompt": prov.get("prompt"),
                                "model": prov.get("model"),
                                "artifact_version": prov.get("artifact_version"),
                                "regions": [f.get("region") for f in faces],
                            },
                        },
                    ]
                },
            },
            # the provenance as its JSON text: the library's reader turns a list of small numbers in an
            # assertion's data into bytes ([0, 300] reads back as base64 of 00 2c), so only text round-trips
            {
                "label": ASSERTION,
                "data": {
                    "prompt": prov.get("prompt"),
                    "artifact_version": prov.get("artifact_version"),
                    "provenance": json.dumps(prov),
                },
            },
        ],
    }


def sign_png(
    png: bytes, provenance: dict, *, key: str | os.PathLike | None = None, title: str = "edited.png"
) -> bytes:
    """`png` with a signed C2PA manifest of `provenance` embedded (key: a key directory, see `key_dir`).
    The library checks the signed result before returning it (its verify_after_sign)."""
    c2pa = _c2pa()
    creds = credentials(key)
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, creds.chain_pem, creds.key_pem, None)  # no TSA: offline
    out = io.BytesIO()
    try:
        with (
            _context(c2pa, creds.ca_pem) as ctx,
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder(manifest(provenance, title), ctx) as builder,
        ):
            builder.sign(signer, MIME, io.BytesIO(png), out)
    except c2pa.C2paError as e:
        raise SigningError(f"signing the PNG failed with the key in {creds.dir}: {e}") from e
    return out.getvalue()


# ---------------------------------------------------------------------------------------- verifying


@dataclass
class Verification:
    """What `verify` found. `ok` when `problems` is empty."""

    path: str
    problems: list[str] = field(default_factory=list)
    manifest: str | None = None  # the active manifest's label
    signature: dict | None = None  # alg, issuer, common_name, serial (the library's signature_info)
    trusted_by: str | None = None  # the CA file the signer chains to
    codes: list[str] = field(default_factory=list)  # the validation's success codes
    failures: list[str] = field(default_factory=list)  # its failure codes, with their explanations
    claim: dict | None = None  # the provenance the manifest signs
    watermark: list[dict] = field(default_factory=list)  # per face: index, region, z, detected

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """A report for people: one line per check."""
        out = [f"{self.path}: " + (f"C2PA manifest {self.manifest}" if self.manifest else "no C2PA manifest")]
        if self.signature:
            s = self.signature
            valid = "claimSignature.validated" in self.codes
            out.append(
                f"  signature: {'valid' if valid else 'NOT valid'} ({s.get('alg')}), signer "
                f"{s.get('common_name')!r} (organization {s.get('issuer')!r})"
                + (f", trusted: issued by the facepaint CA {self.trusted_by}" if self.trusted_by else ", NOT trusted")
            )
        if self.manifest:
            matched = "assertion.dataHash.match" in self.codes
            out.append(
                "  data hash: "
                + ("matches (every byte outside the manifest is as signed)" if matched else "does NOT match")
            )
        if self.claim:
            c = self.claim
            faces = ", ".join(
                ("the masked region" if f.get("index") is None else f"face {f['index']}") + f" at {f.get('region')}"
                for f in c.get("faces") or []
            )
            out.append(
                f"  claim: facepaint {c.get('facepaint')} edited {faces or 'the face'} with the prompt "
                f"{c.get('prompt')!r}, model {c.get('model')}, artifact version {c.get('artifact_version')}, "
                f"seed {c.get('seed')}"
            )
            if not c.get("watermark"):
                out.append("  watermark: not applied (the edit was made without it)")
            for w in self.watermark:
                where = "the masked region" if w["index"] is None else f"face {w['index']}"
                out.append(
                    f"  watermark: {'detected' if w['detected'] else 'NOT detected'} in {where} "
                    f"{w['region']} (z = {w['z']:.1f}, threshold {wm.THRESHOLD:g})"
                )
        out += [f"  problem: {p}" for p in self.problems]
        out.append("verified: the edit is as facepaint signed it" if self.ok else "NOT verified")
        return out

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "ok": self.ok,
            "problems": self.problems,
            "manifest": self.manifest,
            "signature": self.signature,
            "trusted_by": self.trusted_by,
            "codes": self.codes,
            "failures": self.failures,
            "claim": self.claim,
            "watermark": self.watermark,
        }


def verify(
    path: str | os.PathLike, *, key: str | os.PathLike | None = None, watermark_key=wm.DEFAULT_KEY
) -> Verification:
    """Read and validate the C2PA manifest of an image file, trusting the CA of the key directory `key`
    (see `key_dir`; nothing is created there), and check the watermark where the claim says it is."""
    path = Path(path)
    report = Verification(str(path))
    try:
        data = path.read_bytes()
    except OSError as e:
        report.problems.append(f"cannot read {path}: {e.strerror or e}")
        return report
    c2pa = _c2pa()
    ca_file = key_dir(key) / CA_FILE
    ca_pem = ca_file.read_bytes() if ca_file.is_file() else None
    try:
        with _context(c2pa, ca_pem) as ctx:
            reader = c2pa.Reader.try_create(io.BytesIO(data), context=ctx)
            if reader is None:
                report.problems.append(
                    _corrupt_manifest(data, "it is empty") if _has_manifest(data) else _no_manifest(data)
                )
                return report
            with reader:
                active = reader.get_active_manifest() or {}
                results = (reader.get_validation_results() or {}).get("activeManifest") or {}
    except c2pa.C2paError as e:
        reason = f"{type(e).__name__.strip('_')}: {e}"
        if _sniff(data) is None:
            report.problems.append(f"is not an image ({reason}); facepaint writes PNG files")
        elif _has_manifest(data):
            report.problems.append(_corrupt_manifest(data, reason))
        else:
            report.problems.append(f"could not be parsed ({reason})")
        return report
    report.manifest = active.get("label")
    report.signature = active.get("signature_info")
    report.codes = [r["code"] for r in results.get("success") or []]
    report.failures = [f"{r['code']}: {r.get('explanation', '')}" for r in results.get("failure") or []]
    failed = {r["code"] for r in results.get("failure") or []}
    claims = [a.get("data") or {} for a in active.get("assertions") or [] if a.get("label") == ASSERTION]
    try:
        report.claim = json.loads(claims[0]["provenance"])
    except (IndexError, KeyError, TypeError, ValueError):
        report.claim = None
    if "assertion.dataHash.mismatch" in failed:
        report.problems.append("the file was modified after it was signed: " + _what_changed(data, report.claim))
    if "signingCredential.untrusted" in failed:
        who = (report.signature or {}).get("common_name")
        report.problems.append(
            f"the signer {who!r} is not trusted: it does not chain to the facepaint CA "
            + (f"{ca_file}" if ca_pem else f"(there is none at {ca_file})")
            + "; pass --c2pa-dir with the signing machine's key directory (its ca.pem)"
        )
    other = [f for f in report.failures if f.split(":")[0] not in EXPLAINED]
    if other:
        report.problems.append("the manifest does not validate: " + "; ".join(other))
    if not failed:  # a valid claim reports each of these; never pass on silence
        missing = [c for c in REQUIRED if c not in report.codes]
        if missing:
            report.problems.append(f"the validation did not report {', '.join(missing)}")
    if "signingCredential.trusted" in report.codes:
        report.trusted_by = str(ca_file)
    if report.claim is None:
        report.problems.append(f"the manifest has no {ASSERTION} assertion: it was not signed by facepaint edit")
        return report
    if report.claim.get("watermark"):
        _check_watermark(report, data, watermark_key)
    return report


def _check_watermark(report: Verification, data: bytes, key) -> None:
    """The watermark's z-score in each face region the claim records (the mark covers only face pixels)."""
    import numpy as np

    from facepaint.common.images import ImageError, load_rgb

    try:
        pixels = np.asarray(load_rgb(data).image)
    except ImageError as e:
        report.problems.append(f"the pixels cannot be decoded for the watermark check: {e}")
        return
    h, w = pixels.shape[:2]
    for face in report.claim.get("faces") or []:
        x0, y0, x1, y1 = (int(v) for v in face["region"])
        box = np.zeros((h, w), bool)
        box[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = True
        z = wm.detect(pixels, box, key) if box.any() else 0.0
        report.watermark.append(
            {"index": face.get("index"), "region": [x0, y0, x1, y1], "z": z, "detected": z > wm.THRESHOLD}
        )
    missing = [w for w in report.watermark if not w["detected"]]
    if missing or not report.watermark:
        report.problems.append(
            "the claim says the faces were watermarked, but the mark is not detected in "
            + (", ".join(str(w["region"]) for w in missing) or "any face region")
        )


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROVENANCE_KEY = "facepaint"  # the PNG text chunk of an edit's provenance (facepaint.editing.provenance writes it)


def _what_changed(data: bytes, claim: dict | None) -> str:
    """Which part of a signed PNG no longer matches its signed hash: the provenance text (when it differs from
    the signed claim: the keys that differ are named), else the image data."""
    texts = [body.split(b"\0", 1) for kind, body in _png_chunks(data) if kind == b"tEXt" and b"\0" in body]
    raw = next((text for key, text in texts if key == PROVENANCE_KEY.encode()), None)
    try:
        text = None if raw is None else json.loads(raw.decode("latin-1"))
    except ValueError:
        text = None
    if claim is not None and text is not None and text != claim:
        keys = sorted(k for k in set(text) | set(claim) if text.get(k) != claim.get(k))
        verb = "differs" if len(keys) == 1 else "differ"
        return f"its provenance text was changed: {', '.join(keys)} {verb} from the signed provenance (shown here)"
    if claim is not None and text is None and data.startswith(PNG_MAGIC):
        return "its provenance text was removed or damaged (the signed provenance is shown)"
    return "its image data no longer matches the signed hash"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of PNG `data` as far as it can be walked; [] for anything else."""
    if not data.startswith(PNG_MAGIC):
        return []
    found, at = [], 8
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        found.append((kind, data[at + 8 : at + 8 + size]))
        at += 12 + size
    return found


def _has_manifest(data: bytes) -> bool:
    """Whether `data` holds a C2PA manifest store, readable or not: a PNG's caBX chunk, else JUMBF's c2pa label."""
    if not data.startswith(PNG_MAGIC):
        return b"c2pa" in data
    return any(kind == b"caBX" for kind, _ in _png_chunks(data))


def _corrupt_manifest(data: bytes, reason: str) -> str:
    return (
        f"carries a C2PA manifest that cannot be read ({reason}): the file was damaged or tampered with after it "
        "was signed"
    )


def _sniff(data: bytes) -> str | None:
    """The image format of `data` by its magic bytes, None when it is no image format facepaint reads."""
    for magic, kind in ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP")):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _no_manifest(data: bytes) -> str:
    """Why a file has no manifest, as far as can be told."""
    kind = _sniff(data)
    if kind is None:
        return "is not an image (no PNG, JPEG, WEBP, GIF, BMP or TIFF header) and carries no C2PA manifest"
    if kind == "PNG" and b"tEXtfacepaint\x00" in data:
        return (
            "carries facepaint's provenance text but no C2PA manifest: it was re-saved or modified after "
            "signing (or written with --no-sign)"
        )
    return f"carries no C2PA manifest ({kind}): it was not written by facepaint edit, or its manifest was stripped"
