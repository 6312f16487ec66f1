"""factlab: teach small transformers facts and measure what they learned.

The first experiment is CS224N's "Self-Attention, Transformers, and Pretraining": a character-level GPT
pretrained on biographies with span corruption, finetuned to answer "Where was [person] born?".
Data flows one way: text files -> vocab -> data -> model -> train -> checkpoint -> decode -> evaluate.
"""

__version__ = "0.1.0"


class FactlabError(Exception):
    """A problem the user can fix (bad file, mismatched checkpoint...). The CLI prints it as one line, no traceback."""
