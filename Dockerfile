# syntax=docker/dockerfile:1
# Build stage: dependencies are compiled in their own layer, so editing src/ does not rebuild them.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin servicehub

# Runtime stage: distroless, non-root (65532), only the binary.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/servicehub /usr/local/bin/servicehub
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/servicehub"]
CMD ["run"]
