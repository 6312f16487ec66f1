"""The character vocabulary, with the course's contract: PAD "□" = 0, MASK "⁇" = 1, then the sorted characters.

The vocabulary is always built from the pretraining corpus (wiki.txt), even when a model is trained without
pretraining, so that a checkpoint's token ids mean the same thing whichever run produced it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import FactlabError

PAD_CHAR = "\u25a1"  # □
MASK_CHAR = "\u2047"  # ⁇
PAD_ID, MASK_ID = 0, 1


@dataclass(frozen=True)
class Vocab:
    itos: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "stoi", {ch: i for i, ch in enumerate(self.itos)})

    @classmethod
    def from_text(cls, text: str, source: str = "corpus") -> Vocab:
        # Like the course, every distinct character of the whole text counts, newline included: this is what
        # gives the course model its 3,323,392 parameters on wiki.txt.
        for special, name in ((PAD_CHAR, "PAD"), (MASK_CHAR, "MASK")):
            if special in text:
                line = text[: text.index(special)].count("\n") + 1
                raise FactlabError(f"{source}:{line}: contains the reserved {name} character {special!r}")
        return cls((PAD_CHAR, MASK_CHAR, *sorted(set(text))))

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        return cls(tuple(json.loads(text)))

    def to_json(self) -> str:
        return json.dumps(list(self.itos), ensure_ascii=False)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, where: str = "input") -> list[int]:
        """Ids of `text`; an unknown character raises FactlabError naming `where` (e.g. "file.tsv:12")."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as err:
            raise FactlabError(
                f"{where}: character {err.args[0]!r} (U+{ord(err.args[0]):04X}) is not in the vocabulary of the "
                "pretraining corpus"
            ) from None

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)
