"""The editing product: faces in any photo (detection, alignment, the face helper), the editor, and what
every edit carries (provenance, the safety checker, the watermark, the signed C2PA manifest). Imports
facepaint.common and facepaint.method."""
