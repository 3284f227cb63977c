"""Character-level language models (char-rnn, Karpathy 2015) on any UTF-8 text.

- `corpus`: reading a text, its vocabulary, the train/validation split and
  char-rnn's contiguous batch streams;
- `task`: the `charlm` task of `lstmlab.tasks` (`CharLM`), built on the corpus;
- `sampling`: text from a trained model, one character at a time;
- `trace`: what a trained stack's cells and gates do over a text, and which cells
  follow readable properties of it (Karpathy, Johnson and Fei-Fei 2015);
- `page`: the self-contained HTML page of `lstmlab inspect`.

Nothing is imported here: `import lstmlab.charlm.task` (or `lstmlab.tasks.get("charlm")`)
loads only what it needs.
"""
