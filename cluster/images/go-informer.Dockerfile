# The Go test operator for kind (`make image CLUSTER=kind`), built exactly as on the local node:
# cluster/build-go-operator.sh compiles main.go in GOPATH mode inside Debian's kubernetes source
# package, against the client-go it vendors, with Debian's Go 1.19. The image is the static
# binary alone: no shell, like distroless.
FROM debian:bookworm AS build
RUN sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/deb-src.sources \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev ca-certificates
WORKDIR /src
COPY cluster/lib.sh cluster/build-go-operator.sh cluster/
COPY tests/operators/go_informer/main.go tests/operators/go_informer/
RUN cp "$(TRIAGE_CACHE_DIR=/cache bash cluster/build-go-operator.sh)" /go-informer

FROM scratch
COPY --from=build /go-informer /go-informer
USER 65532:65532
ENTRYPOINT ["/go-informer"]
