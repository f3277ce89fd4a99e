# The project image: the daemon and the warden, nothing else (no shell, no
# libc: both are static). Built from prebuilt release binaries placed in the
# build context (goreleaser does this; so does `make image`), so it needs no
# base image and `buildah bud` builds it offline.
FROM scratch
COPY image-cache-daemon warden /
USER 65532:65532
ENTRYPOINT ["/image-cache-daemon"]
