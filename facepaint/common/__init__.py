"""What every layer shares: facepaint's error type, checking settings and user input, safe image decoding,
atomic writes, per-stage reports. Imports nothing else of facepaint."""
