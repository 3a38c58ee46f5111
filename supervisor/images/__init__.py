"""Images: a content-addressed store in the OCI layout, layer tars, builds, sharing.

    reference      Docker's reference grammar (redis:7 -> docker.io/library/redis:7)
    oci            the OCI formats as Structs
    layers         layer tars <-> overlay layer dirs (whiteouts both ways), A/C/D changes
    store          blobs, index.json tags, layers unpacked once by ChainID, the build cache
    use            what a container takes from its image (lower dirs, defaults)
    containerfile  the Containerfile/Dockerfile parser
    build          `supervise build`: steps, cache, RUN in a container on the layers so far
"""
