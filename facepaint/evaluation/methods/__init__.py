"""The compared methods, one module each (the SD1.5 inpainting rows share `inpaint`), behind
`base.Method`; `registry.build_methods` builds them by name."""
