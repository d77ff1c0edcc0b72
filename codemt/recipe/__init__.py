"""`codemt recipe default`: the shipped default model, from nothing, in one command.

The whole pipeline, each step resumable: mine the corpus every machine has (the standard
library and the installed packages), train the tokenizer, span-masking pre-training
(where the recipe has it), multi-mode training, evaluation, export. The model size and
the training lengths come from the hardware; `--budget` bounds one run's time, after
which it checkpoints and stops, and the same command resumes where it stopped, also after
a kill. Evaluation data is never trained on.

recipes (what the model is for each kind of hardware) -> corpus (what is mined, the leak
check, the copy that travels to a machine that trains) -> run (the steps) -> ship (the
exported model folder and its card).
"""
