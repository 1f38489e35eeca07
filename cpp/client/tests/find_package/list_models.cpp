// Prints `model <name> <spatial_dims> <class names...>` for every model a server serves.
// usage: list_models HOST:PORT [TOKEN]
#include <cstdio>
#include <medrefine/client/remote_session.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: list_models HOST:PORT [TOKEN]\n");
    return 64;
  }
  medrefine::client::ConnectOptions connect;
  connect.target = argv[1];
  if (argc > 2) connect.bearer_token = argv[2];
  medrefine::client::RemoteSession session(connect);
  try {
    for (const auto& model : session.list_models()) {
      std::printf("model %s %u", model.name.c_str(), model.spatial_dims);
      for (const auto& name : model.class_names) std::printf(" %s", name.c_str());
      std::printf("\n");
    }
  } catch (const medrefine::client::RemoteError& e) {
    std::fprintf(stderr, "error: %s: %s\n", e.code_name(), e.message().c_str());
    return 2;
  }
  return 0;
}
