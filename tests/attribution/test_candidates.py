"""Which images the Annotate page shows first: where the input gradient sits most off the object."""
import torch
from torch import nn

from gradviz.attribution.candidates import annotation_order, off_object_share


class CornerReader(nn.Module):
    """Logits read from the top-left 4×4 corner on images 0-1 and from the centre on the rest (by a flag pixel)."""

    def forward(self, x):
        corner = x[:, :, :4, :4].flatten(1).mean(1)  # means: a sum of 64 bright pixels would saturate p
        centre = x[:, :, 10:18, 10:18].flatten(1).mean(1)
        reads_corner = x[:, 0, 27, 27] > 0.5
        score = torch.where(reads_corner, corner, centre)
        return torch.stack([score, -score], 1)


def test_images_whose_gradient_sits_off_the_object_come_first():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # the object: a bright centre square
    x[:2, 0, 27, 27] = 1.0  # images 0 and 1 read the corner
    y = torch.zeros(4, dtype=torch.long)
    shares = off_object_share(CornerReader(), x, y)
    assert shares[:2].min() > 0.99 and shares[2:].max() < 0.01
    assert annotation_order(CornerReader(), x, y).tolist()[:2] == [0, 1]
    region = torch.zeros(4, 28, 28, dtype=torch.bool)
    region[:, :4, :4] = True  # say the object is the corner: now the centre readers sit off it
    assert set(annotation_order(CornerReader(), x, y, region=region).tolist()[:2]) == {2, 3}
