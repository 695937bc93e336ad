"""The method (SPEC sections 1-4): SD1.5 inpainting components, face masks, the face-aware text adapter,
the mask-weighted loss, k/v fine-tuning, the trained artifact, generation, sampling options and pixel-level
blending. Imports only facepaint.common."""
