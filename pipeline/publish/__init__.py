"""Publishing: Google OAuth, tokens sealed at rest, the YouTube client and publishing jobs."""
