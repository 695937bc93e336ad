"""The compared methods, one module each, behind `base.Method`.

The SD1.5 inpainting rows share `inpaint`; `registry.build_methods` builds them by name."""
