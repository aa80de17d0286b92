import numpy as np

from poisongate.detectors.batch_shift import BatchShift
from poisongate.detectors.registry import register


@register
class BatchPattern(BatchShift):
    """A pattern added to many rows (a sine across the features) moves each feature's mean a little but
    coherently: a peak in the Fourier spectrum of the batch's mean shifts (each shift is about N(0, 1) on clean
    data, so each frequency's amplitude is scaled to about 1)."""

    name = "batch_pattern"
    description = ("subtle structured noise: a periodic pattern across features in the batch's mean shifts; "
                   "batch-level like batch_shift, so such a batch is refused")
    reason = "a periodic pattern across features in the batch's mean (structured noise)"

    @staticmethod
    def statistic(mean_z, var_z):
        return float(np.max(np.abs(np.fft.rfft(mean_z)[1:])) / np.sqrt(len(mean_z) / 2))
