// The uWebSockets comparison server for bench/compare.sh: the same two endpoints as the node and
// tokio servers. `/` subscribes every client to one topic and publishes each message it receives
// to that topic (everyone but the sender, as `ws->publish` does); `/echo` sends each message back.
// Settings are uWebSockets' defaults for a chat, made explicit: no compression, no TLS, 16 MiB
// messages, 64 MiB of backpressure per client (so a slow bench client is buffered, never dropped,
// as wschat does up to its budget), idle timeout 120 s (no bench run lasts that long idle).
//
// This file is ours; uWebSockets and uSockets are not part of this repository: build.sh compiles
// this file against source trees the caller names. Usage: uws-server PORT
#include "App.h"

#include <cstdlib>
#include <iostream>

namespace {
struct Client {};  // no per-connection state: both endpoints are stateless

constexpr unsigned MAX_PAYLOAD = 16 * 1024 * 1024;
constexpr unsigned MAX_BACKPRESSURE = 64 * 1024 * 1024;
constexpr unsigned short IDLE_TIMEOUT_S = 120;
}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: uws-server PORT" << std::endl;
        return 2;
    }
    int port = std::atoi(argv[1]);

    uWS::App app;
    app.ws<Client>("/echo", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = MAX_PAYLOAD,
        .idleTimeout = IDLE_TIMEOUT_S,
        .maxBackpressure = MAX_BACKPRESSURE,
        .message = [](auto *ws, std::string_view message, uWS::OpCode op) { ws->send(message, op); },
    });
    app.ws<Client>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = MAX_PAYLOAD,
        .idleTimeout = IDLE_TIMEOUT_S,
        .maxBackpressure = MAX_BACKPRESSURE,
        .open = [](auto *ws) { ws->subscribe("all"); },
        .message = [](auto *ws, std::string_view message, uWS::OpCode op) {
            ws->publish("all", message, op);
        },
    });
    app.listen("127.0.0.1", port, [port](auto *listen_socket) {
        if (listen_socket) {
            std::cout << "uws-server listening on 127.0.0.1:" << port << std::endl;
        } else {
            std::cerr << "uws-server: cannot listen on 127.0.0.1:" << port << std::endl;
            std::exit(1);
        }
    });
    app.run();
}
