"""CLIP's caption tokenizer without torch: the token ids open_clip's `SimpleTokenizer` gives,
computed by HF `tokenizers` from a JSON file that travels in the model package.

The pipeline, step by step as open_clip does it (facts read from open_clip/tokenizer.py):

1. clean (Python, here): `ftfy.fix_text`, `html.unescape` twice, whitespace runs (str.split's
   idea of whitespace) to one space, strip, `str.lower`. HF's normalisers can do none of
   ftfy/unescape, and its Lowercase is not Python's (final sigma, Unicode version), so the
   JSON has no normaliser.
2. split into words (HF Split, in the JSON): open_clip's regex
   `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`
   with IGNORECASE, run by the `regex` module. Oniguruma (inside `tokenizers`) knows another
   Unicode version, and IGNORECASE changes classes in ways Oniguruma's (?i) does not copy
   (U+0345 matches no branch, so open_clip drops it; "'ſ" is the contraction "'s"). So the
   JSON spells every class out as explicit code-point ranges taken from the `regex` module
   when the file is built: the file says which characters are letters, and the runtime's
   Oniguruma version no longer matters.
3. bytes to the GPT-2 byte alphabet, BPE with the end-of-word suffix "</w>" (HF).
4. a word that is exactly "<start_of_text>" or "<end_of_text>" is that special id (open_clip's
   BPE cache holds them); handled here, since HF's added tokens would also cut them out of the
   middle of a punctuation run where open_clip's regex does not see them.
5. [SOT] + ids + [EOT], cut to the context length with the last id forced to EOT, padded with 0.

Identity holds for the `regex` version that built the file (export) and the `ftfy` version
that runs here: the same ones open_clip would use. tokenizers 0.15 to 0.23 give the same ids.

`import fakedet.runtime.caption_tokenizer` imports neither torch nor tokenizers: `tokenizers`
and `ftfy` are imported when a tokenizer is built (`pip install 'fakedet[text]'`).
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fakedet.errors import BackendUnavailable, FakedetError, ManifestError, PackageError, first_line

SOT = "<start_of_text>"
EOT = "<end_of_text>"
END_OF_WORD = "</w>"
DEFAULT_CONTEXT_LENGTH = 77
OPEN_CLIP_VOCAB = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # open_clip keeps the first 48894 merges of the file
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
MAX_FILE_BYTES = 64 << 20  # the CLIP tokenizer file is 1.5 MB; refuse anything absurd before parsing
INSTALL_HINT = "install the caption extra: pip install 'fakedet[text]'"


class CaptionError(FakedetError):
    """One caption that cannot be tokenized; `index` is its position in the batch."""

    def __init__(self, index: int, problem: str):
        self.index = index
        self.problem = problem
        super().__init__(f"caption {index}: {problem}")


# ---------------------------------------------------------------- building the JSON (export time)

def open_clip_vocab_path() -> Path:
    """open_clip's BPE vocabulary file, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("open_clip is not installed: its BPE vocabulary file is needed "
                                 "to write a caption tokenizer (pip install 'fakedet[export]')")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / OPEN_CLIP_VOCAB
        if path.is_file():
            return path
    raise BackendUnavailable(f"open_clip is installed but has no {OPEN_CLIP_VOCAB}")


def _read_merges(vocab_gz_path) -> list[tuple[str, str]]:
    path = Path(vocab_gz_path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError) as e:
        raise PackageError(path, f"cannot read the BPE vocabulary: {first_line(e)}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise PackageError(path, "BPE vocabulary is larger than 64 MiB uncompressed")
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise PackageError(path, f"BPE vocabulary is not UTF-8: {e.reason}") from None
    body = lines[1:1 + N_MERGES]  # line 0 is the version header
    if len(body) < N_MERGES:
        raise PackageError(path, f"BPE vocabulary has {len(body)} merges, open_clip's CLIP needs {N_MERGES}")
    merges = []
    for number, line in enumerate(body, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise PackageError(path, f"line {number}: a merge is two symbols, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in open_clip's vocabulary order:
    the printable Latin-1 bytes (standing for themselves, in byte order), then the other bytes
    in byte order, standing for the code points 256, 257, ..."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    n_moved = 256 - len(kept)
    return [chr(b) for b in kept] + [chr(256 + i) for i in range(n_moved)]


def _clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in open_clip's order: the byte symbols, the same with "</w>", one token per
    merge, then the two specials."""
    symbols = _byte_symbols()
    tokens = [*symbols, *(a + END_OF_WORD for a in symbols), *(a + b for a, b in merges), SOT, EOT]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise FakedetError("BPE vocabulary repeats a token; open_clip's ids would not be unique")
    return vocab


def _ranges(chars: str) -> str:
    """A regex character-class body listing the code points of `chars` as \\x{...} ranges."""
    points = np.sort(np.frombuffer(chars.encode("utf-32-le"), dtype="<u4"))
    if points.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(points) != 1)
    lows = points[np.r_[0, breaks + 1]]
    highs = points[np.r_[breaks, points.size - 1]]
    return "".join(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}"
                   for lo, hi in zip(lows.tolist(), highs.tolist()))


def clip_word_pattern() -> str:
    """open_clip's word regex with every class and every case-insensitive letter written out as
    code points, as the installed `regex` module (the one open_clip uses) decides them."""
    try:
        import regex
    except ImportError:
        raise BackendUnavailable("the 'regex' package (an open_clip dependency) is needed to write a "
                                 "caption tokenizer: pip install 'fakedet[export]'") from None
    every = np.r_[0:0xD800, 0xE000:0x110000].astype("<u4").tobytes().decode("utf-32-le")  # all but surrogates

    def members(cls: str, among: str = every) -> str:
        return "".join(regex.findall(cls, among, regex.IGNORECASE))

    # The few characters that match a literal of the specials or contractions, found in one scan;
    # then each literal's own set among them (ſ matches s, K (Kelvin) would match k).
    spelled = "".join(sorted(set(SOT + EOT + "".join(CONTRACTIONS))))
    candidates = members(f"[{regex.escape(spelled)}]")
    case_variants = {ch: members(regex.escape(ch), candidates) for ch in spelled}

    def literal(word: str) -> str:
        return "".join(f"[{_ranges(case_variants[ch])}]" for ch in word)

    letters, digit, other = (_ranges(members(c)) for c in (r"[\p{L}]", r"[\p{N}]", r"[^\s\p{L}\p{N}]"))
    branches = [literal(w) for w in (SOT, EOT, *CONTRACTIONS)]
    return "|".join([*branches, f"[{letters}]+", f"[{digit}]", f"[{other}]+"])


def build_clip_tokenizer_json(vocab_gz_path) -> str:
    """The HF `tokenizers` JSON of open_clip's CLIP tokenizer, from open_clip's vocabulary file
    (`open_clip_vocab_path()`). Needs `regex` (step 2 of the module docstring), not torch,
    open_clip or tokenizers. Written by hand in the format every tokenizers >= 0.15 reads
    (merges as "a b" strings; CLIP's symbols never contain a space)."""
    merges = _read_merges(vocab_gz_path)
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": clip_word_pattern()}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": END_OF_WORD, "fuse_unk": False, "byte_fallback": False,
            "vocab": _clip_vocab(merges),
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    return json.dumps(spec, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- tokenizing (runtime)

def _check_json(spec, source: str) -> None:
    if not isinstance(spec, dict):
        raise PackageError(source, "tokenizer file is not a JSON object")
    model = spec.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise PackageError(source, "tokenizer file has no BPE model (model.type must be \"BPE\")")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not isinstance(model.get("merges"), list):
        raise PackageError(source, "tokenizer file's BPE model has no vocab object or merges list")
    missing = [t for t in (SOT, EOT) if not isinstance(vocab.get(t), int)]
    if missing:
        raise PackageError(source, f"tokenizer file's vocabulary lacks {', '.join(missing)}")
    if model.get("end_of_word_suffix") != END_OF_WORD:
        raise PackageError(source, f"tokenizer file's BPE model must use the end-of-word suffix {END_OF_WORD!r}")


def _check_context_length(context_length) -> int:
    if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
        raise ManifestError(f"caption context length must be a positive integer, got {context_length!r}")
    return context_length


def clean_caption(text: str) -> str:
    """open_clip's default ('lower') cleaning: ftfy, HTML entities unescaped twice, whitespace
    collapsed and stripped, lower case. Needs ftfy (imported by the CaptionTokenizer)."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class CaptionTokenizer:
    """Captions -> int32 token ids [N, context_length], identical to open_clip's tokenizer."""

    def __init__(self, tokenizer, context_length: int, source: str):
        self._tokenizer = tokenizer
        self._model = tokenizer.model
        self._pre_tokenizer = tokenizer.pre_tokenizer
        self.context_length = _check_context_length(context_length)
        self.source = source
        self.sot_id = tokenizer.token_to_id(SOT)
        self.eot_id = tokenizer.token_to_id(EOT)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._specials = {SOT: self.sot_id, EOT: self.eot_id}
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets: 3x faster here
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    @classmethod
    def from_file(cls, path, context_length: int = DEFAULT_CONTEXT_LENGTH) -> "CaptionTokenizer":
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise PackageError(path, f"cannot read the tokenizer file: {e.strerror or first_line(e)}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise PackageError(path, "tokenizer file is larger than 64 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PackageError(path, f"tokenizer file is not UTF-8: {e.reason}") from None
        return cls.from_json(text, context_length, source=str(path))

    @classmethod
    def from_json(cls, text: str, context_length: int = DEFAULT_CONTEXT_LENGTH,
                  source: str = "<tokenizer JSON>") -> "CaptionTokenizer":
        _check_context_length(context_length)
        try:
            spec = json.loads(text)
        except (TypeError, ValueError) as e:
            raise PackageError(source, f"tokenizer file is not valid JSON: {first_line(e)}") from None
        _check_json(spec, source)
        # One thread unless the user says otherwise: a batch of captions is ~2 ms on one core, and
        # HF's thread pool slows down on a busy machine and is unsafe across fork (servers).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import ftfy  # noqa: F401  (cleaning needs it; fail here, not at the first caption)
            from tokenizers import Tokenizer
        except ImportError as e:
            raise BackendUnavailable(f"captions need the '{e.name}' package: {INSTALL_HINT}") from None
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as e:  # tokenizers raises plain Exception for any schema problem
            raise PackageError(source, f"tokenizers cannot load the tokenizer file: {first_line(e)}") from None
        return cls(tokenizer, context_length, source)

    def _clean(self, captions: Sequence[str]) -> list[str]:
        if isinstance(captions, (str, bytes)):
            raise FakedetError("captions must be a list of strings, got a single "
                               f"{type(captions).__name__}")
        cleaned = []
        for i, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise CaptionError(i, f"a caption must be text (str), got {type(caption).__name__}")
            cleaned.append(clean_caption(caption))  # ftfy turns lone surrogates into U+FFFD
        return cleaned

    def _ids_with_specials(self, text: str) -> list[int]:
        """Word by word: a word that is exactly a special token is its id (open_clip's BPE cache)."""
        ids = []
        for word, _ in self._pre_tokenizer.pre_tokenize_str(text):
            special = self._specials.get(word)  # the specials are ASCII: byte-level leaves them as they are
            if special is not None:
                ids.append(special)
            else:
                ids.extend(t.id for t in self._model.tokenize(word))
        return ids

    def token_ids(self, captions: Sequence[str]) -> list[list[int]]:
        """The BPE ids of each cleaned caption, without SOT/EOT and uncut."""
        cleaned = self._clean(captions)
        plain = [i for i, t in enumerate(cleaned) if SOT not in t and EOT not in t]
        out: list[list[int]] = [[] for _ in cleaned]
        if plain:
            for i, enc in zip(plain, self._encode_batch([cleaned[i] for i in plain], add_special_tokens=False)):
                out[i] = enc.ids
        for i, text in enumerate(cleaned):
            if SOT in text or EOT in text:
                out[i] = self._ids_with_specials(text)
        return out

    def encode(self, captions: Sequence[str]) -> np.ndarray:
        """int32 [len(captions), context_length]: [SOT] + ids + [EOT], cut to the context length
        with the last id forced to EOT, padded with 0 (open_clip's truncation)."""
        rows = self.token_ids(captions)
        length = self.context_length
        out = np.zeros((len(rows), length), dtype=np.int32)
        for r, ids in enumerate(rows):
            kept = ids[:length - 1]
            out[r, 0] = self.sot_id
            out[r, 1:1 + len(kept)] = kept
            out[r, min(len(ids) + 1, length - 1)] = self.eot_id
        return out

    def __repr__(self) -> str:
        return f"CaptionTokenizer({self.source!r}, context_length={self.context_length})"


def write_clip_tokenizer(path: str | os.PathLike, vocab_gz_path=None) -> Path:
    """Write open_clip's CLIP tokenizer as HF JSON to `path` (atomically)."""
    from fakedet.atomic import atomic_write_bytes

    text = build_clip_tokenizer_json(vocab_gz_path or open_clip_vocab_path())
    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)
