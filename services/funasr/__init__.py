"""What this project knows about loading FunASR models, in one package.

* ``imports``: import only the FunASR modules a model directory needs (not all of
  FunASR's registry: seconds and hundreds of MB less).
* ``lean_loading``: memory-mapped checkpoints, no random init they replace.
* ``automodel``: ``load_automodel``, the one way the workers build an ``AutoModel``.
* ``fsmn_guards``: FSMN-VAD's score clamp and segment cap.

Used by the ASR, VAD (FSMN), emotion (emotion2vec+) and speaker (CAM++) workers;
none of them imports another worker's modules for it.
"""
