"""Neural engines: diffusers video and keyframes, Coqui and hosted voices, MuseTalk and
Wav2Lip lip-sync.

Each loads from a local model folder (never a hub) and raises models.errors.ModelUnavailable
with the reason when it cannot. Import the engine modules directly: each pulls in its own heavy
libraries (diffusers, coqui-tts, httpx) only when imported.
"""
