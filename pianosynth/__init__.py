"""pianosynth: a real-time physical-model piano (Bank, Avanzini, Borin, De Poli, Fontana &
Rocchesso, "Physically informed signal processing methods for piano sound synthesis",
EURASIP JASP 2003).

Layout (imports point one way): ``gui -> engine -> dsp, design``; ``io -> engine``.
``dsp`` holds numba kernels only; ``design`` turns physical parameters into coefficients.
"""

__version__ = "0.1.0"
