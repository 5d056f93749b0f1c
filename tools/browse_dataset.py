"""See what the model is fed: training and validation samples after the
data pipeline, as image + mask overlays and one overview PNG.

  python tools/browse_dataset.py experiment=demo
  python tools/browse_dataset.py experiment=cityscapes_ann dataset.root=/data/cityscapes browse.num=16

Required: nothing (experiment=NAME picks the dataset; default shapes).
"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, prepare_argv, set_output_dir
from ann.commands.browse_dataset import browse


@hydra.main(version_base="1.3", config_path="../configs", config_name="browse")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    paths = browse(cfg)
    count = (len(paths) - 1) // 2
    print(f"wrote {count} train and {count} val samples to {cfg.output_dir}")
    print(paths[-1])


if __name__ == "__main__":
    prepare_argv(__file__, "browse", __doc__)
    main()
