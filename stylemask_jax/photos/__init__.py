"""Real photos and videos: loading, landmarks, FFHQ alignment, video streaming, smoothing."""
