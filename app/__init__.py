"""vein2vein: vein-to-vein tracking for autologous CAR-T cell therapy."""

__version__ = "0.1.0"
