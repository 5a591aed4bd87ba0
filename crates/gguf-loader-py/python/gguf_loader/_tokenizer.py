"""The model's own tokenizer (see :class:`Tokenizer`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, List, Literal, Optional, Tuple, Union, overload

from . import _native

#: Ids in, whole characters out (``Tokenizer.stream``): ``push(id)`` gives
#: the text an id completes (empty while a character is partial),
#: ``finish()`` what is left, as U+FFFD.
TextStream = _native.TextStream


class Tokenizer:
    """A model's tokenizer, built from its GGUF's ``tokenizer.*`` metadata
    (``GGUFFile.tokenizer()``) with llama.cpp's own algorithms, and held to
    llama.cpp's tokenizer tests: byte-level BPE (``gpt2``, with the
    pre-tokenizer ``tokenizer.ggml.pre`` names), SentencePiece (``llama``),
    WordPiece (``bert``) and Unigram (``t5``). It keeps nothing of the file
    but the keys it was built from (a small GGUF of them: 1.8 MB for
    SmolLM2, 6.5 MB for Gemma-3), which is what it pickles as: a pickle
    rebuilds it in another process without the file. It is immutable, so
    its copies are itself.

    ``encode`` and ``decode`` take llama.cpp's ``llama_tokenize`` /
    ``llama_detokenize`` flags, off by default as in llama.cpp's tokenizer
    tests and ``gguf-loader tokenize``: pass ``add_special=True`` to add BOS
    (and EOS) where the model asks for them. Both release the GIL;
    ``encode_batch`` encodes many texts on every core.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _native.Tokenizer) -> None:
        self._native = native

    @property
    def model(self) -> str:
        """The algorithm by ``tokenizer.ggml.model``'s name: ``"gpt2"``,
        ``"llama"``, ``"bert"`` or ``"t5"``."""
        return self._native.model

    @property
    def pre(self) -> str:
        """The pre-tokenizer (``tokenizer.ggml.pre``); ``""`` where none."""
        return self._native.pre

    @property
    def vocab_size(self) -> int:
        return self._native.vocab_size

    def __len__(self) -> int:
        return self._native.vocab_size

    @property
    def bos(self) -> Optional[int]:
        """The beginning-of-sequence token's id, if any."""
        return self._native.bos

    @property
    def eos(self) -> Optional[int]:
        """The end-of-sequence token's id, if any."""
        return self._native.eos

    @property
    def eot(self) -> Optional[int]:
        """The end-of-turn token's id, if any."""
        return self._native.eot

    @property
    def eog(self) -> Tuple[int, ...]:
        """Every id that ends generation (EOS, EOT and the like)."""
        return tuple(self._native.eog)

    @property
    def add_bos(self) -> bool:
        """Whether ``add_special=True`` adds BOS."""
        return self._native.add_bos

    @property
    def add_eos(self) -> bool:
        """Whether ``add_special=True`` adds EOS."""
        return self._native.add_eos

    @property
    def chat_template(self) -> Optional[str]:
        """The file's ``tokenizer.chat_template``, if any."""
        return self._native.chat_template

    @property
    def warnings(self) -> List[str]:
        """What the metadata left unclear (also issued as ``RuntimeWarning``
        when the tokenizer is built)."""
        return self._native.warnings

    def encode(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> List[int]:
        """``text`` as token ids. ``add_special`` adds BOS / EOS where the
        model asks for them; ``parse_special`` turns the text of special
        tokens (``<|im_start|>``…) into those tokens instead of spelling
        it out."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        return self._native.encode(text, add_special, parse_special)

    def encode_batch(
        self, texts: Iterable[str], *, add_special: bool = False, parse_special: bool = False
    ) -> List[List[int]]:
        """``encode`` of each text, in order, the texts shared out among the
        decoding threads (``RAYON_NUM_THREADS``, else every core) without
        the GIL: a dataset's rows, say. Ctrl-C is heard every few MB of
        text."""
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be an iterable of str, not one {type(texts).__name__}")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, not {type(text).__name__}")
        return self._native.encode_batch(texts, add_special, parse_special)

    def decode(
        self, ids: Iterable[int], *, remove_special: bool = False, unparse_special: bool = False
    ) -> str:
        """``ids`` as text (bytes that are not UTF-8 as U+FFFD).
        ``remove_special`` drops a leading BOS and trailing EOS the tokenizer
        would add; ``unparse_special`` writes control tokens as their text.
        ``ValueError`` for an id outside the vocabulary."""
        return self._native.decode(_ids(ids), remove_special, unparse_special)

    def decode_bytes(
        self, ids: Iterable[int], *, remove_special: bool = False, unparse_special: bool = False
    ) -> bytes:
        """``decode``'s bytes, before any UTF-8 check."""
        return self._native.decode_bytes(_ids(ids), remove_special, unparse_special)

    def token_to_piece(self, id: int, *, special: bool = False) -> bytes:
        """The bytes token ``id`` decodes to (a byte token's may be part of
        a character); a control token's text only with ``special``."""
        return self._native.token_to_piece(id, special)

    def token_text(self, id: int) -> str:
        """Token ``id``'s text in the vocabulary (``"▁the"``, ``"<0x0A>"``)."""
        return self._native.token_text(id)

    def token_id(self, text: str) -> Optional[int]:
        """The id of the token whose vocabulary text is ``text``, or ``None``."""
        return self._native.token_id(text)

    def stream(self, *, continuing: bool = False, unparse_special: bool = False) -> "TextStream":
        """A decoder of ids one at a time (``push(id) -> str``, then
        ``finish() -> str``) that gives whole characters only, holding back
        the bytes of one split across tokens, as generation prints text.
        The pieces joined are ``decode``'s text before its clean-up of
        spaces. With ``continuing`` (ids that continue a text already
        written, as a prompt's) the first piece keeps SentencePiece's
        leading space."""
        return self._native.stream(continuing, unparse_special)

    def is_eog(self, id: int) -> bool:
        """Whether ``id`` ends generation."""
        return self._native.is_eog(id)

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        add_generation_prompt: bool = ...,
        tokenize: Literal[False] = ...,
    ) -> str: ...

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        add_generation_prompt: bool = ...,
        tokenize: Literal[True],
    ) -> List[int]: ...

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
    ) -> Union[str, List[int]]:
        """``messages`` (``{"role": "user", "content": "…"}`` mappings)
        rendered with the file's chat template, as Hugging Face's method of
        this name does (Jinja, with ``bos_token``, ``eos_token``,
        ``raise_exception`` and ``strftime_now``), and with
        ``add_generation_prompt`` the opening of the assistant's turn. A
        file without a template renders with llama.cpp's fallback (Gemma's
        turn format where the vocabulary has ``<start_of_turn>``, else
        ChatML) and a ``RuntimeWarning``. With ``tokenize``, the ids, as
        ``gguf-loader generate --chat`` encodes them: special tokens parsed,
        BOS added unless the template wrote it. ``ValueError`` where the
        template fails."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a sequence of mappings, not {type(messages).__name__}")
        text, add_special, has_template = self._native.render_chat(list(messages), add_generation_prompt)
        if not has_template:
            fallback = "Gemma's turn format" if self.token_id("<start_of_turn>") is not None else "ChatML"
            warnings.warn(
                f"the file has no tokenizer.chat_template: rendered with {fallback}, as llama.cpp does",
                RuntimeWarning,
                stacklevel=2,
            )
        if tokenize:
            return self._native.encode(text, add_special, True)
        return text

    def __repr__(self) -> str:
        return repr(self._native)

    # Pickled as the metadata it was built from (its ``tokenizer.*`` keys,
    # ``general.name`` and ``general.architecture``, as a small GGUF of
    # their own): a pickle rebuilds the same tokenizer in another process
    # (multiprocessing, ``datasets.map(num_proc=...)``, a spawned DataLoader
    # worker) without the model's file. Copies are itself: it is immutable.
    def __reduce__(self) -> Tuple[Any, Tuple[bytes, type]]:
        return (_from_gguf, (self._native.gguf(), type(self)))

    def __copy__(self) -> "Tokenizer":
        return self

    def __deepcopy__(self, memo: Any) -> "Tokenizer":
        return self


def _from_gguf(data: bytes, cls: type = Tokenizer) -> Tokenizer:
    """The tokenizer a pickle holds (see ``Tokenizer.__reduce__``), of its
    class (a subclass stays one)."""
    tok: Tokenizer = cls(_native.tokenizer_from_gguf(data))
    return tok


def _ids(ids: Iterable[int]) -> List[int]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ints, not {type(ids).__name__}")
    return list(ids)
