# syntax=docker/dockerfile:1
# The servicehub operator image: `docker build .` from a clean checkout.

# Build stage. Dependencies compile in their own layer from the manifests alone (with stub
# sources for every target the manifest declares), so editing src/ does not rebuild them.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# Build settings of the dependencies (the bundled SQLite's flags: see .cargo/config.toml).
COPY .cargo ./.cargo
RUN mkdir -p src benches tests/it \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do echo 'fn main() {}' > benches/$b.rs; done \
    && echo '' > tests/it/main.rs \
    && cargo build --release --locked --bin servicehub \
    && rm -rf src benches tests
# The migrations are embedded in the binary at compile time.
COPY migrations ./migrations
COPY src ./src
RUN mkdir -p benches tests/it \
    && for b in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do echo 'fn main() {}' > benches/$b.rs; done \
    && echo '' > tests/it/main.rs \
    && touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin servicehub

# Runtime stage: distroless, non-root (65532), nothing but the binary.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/servicehub /usr/local/bin/servicehub
USER 65532:65532
# The file transport (the default) needs a writable directory; the root filesystem is
# read-only under the chart, which points this at the data volume or sets SMTP/webhook.
ENV SERVICEHUB_NOTIFY_DIR=/tmp/servicehub-outbox
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/servicehub"]
CMD ["run"]
