"""Training: an explicit loop on Hugging Face Accelerate, with exact resume.

The modules, each depending only on those above it:

    schedule.py     learning-rate schedules (factors of the peak rate by step)
    config.py       TrainSettings, the TrainData contract, TrainState, learning_rate
    checkpoint.py   the run folder: checkpoints written atomically, checked, resumed from
    prefetch.py     getting batches: built ahead in worker processes on a GPU, timed
    control.py      stop signals, and what data-parallel processes agree on every step
    optim.py        the optimiser: AdamW, or Adafactor as T5 trains with it
    loop.py         train(): the model, its optimiser and schedule, and the loop itself
    stages.py       a corpus in, checkpoints out: tokenizer, token caches, examples and
                    the training stages (what `codemt train` runs)

Import from the module that defines a name (`from codemt.training.loop import train`):
this package imports none of them, so that `codemt --help` and `TrainSettings` need no
torch.
"""
