"""See what the model is fed: python tools/browse_dataset.py experiment=NAME [browse.num=8] [browse.split=train|val] [browse.out=DIR]"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, quote_path_argv, set_output_dir
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
    quote_path_argv()  # a sweep folder's "=" in checkpoint=... needs no quotes
    main()
