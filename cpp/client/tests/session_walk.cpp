// Walks one session through every RemoteSession call, printing the mask the client holds after
// each: `step <name> version <v> crc <crc32 of the labels as bytes, C order> classes <K>`, and
// what accept() gave: `accept version <v> images <n> in_use <0|1> checked <0|1> classes <K>`.
// tests/cpp/test_client.py replays the same walk on an in-process medrefine.Session and Site
// (the server runs with --site-dir).
// usage: medrefine_session_walk --target HOST:PORT --model NAME --image FILE MARK...
//        [--token-file FILE]   (the marks go to one refine call)
#include <zlib.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <vector>

#include "image_files.hpp"
#include "medrefine/client/remote_session.hpp"
#include "options.hpp"

namespace {

using medrefine::client::RemoteError;
using medrefine::client::RemoteSession;

void print_step(const char* name, const RemoteSession& session) {
  const auto& labels = session.mask().labels;
  std::vector<unsigned char> bytes(labels.begin(), labels.end());
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size()));
  std::printf("step %s version %llu crc %lu classes %zu\n", name,
              static_cast<unsigned long long>(session.mask().version), crc,
              session.status().class_names.size());
}

/// The call's gRPC status name, or "OK".
template <typename Call>
const char* status_of(Call&& call) {
  try {
    call();
    return "OK";
  } catch (const RemoteError& e) {
    return e.code_name();
  }
}

int walk(const medrefine::examples::Options& options) {
  medrefine::client::ConnectOptions connect;
  connect.target = options.target;
  if (!options.token_file.empty()) {
    connect.bearer_token = medrefine::examples::read_token_file(options.token_file);
  }
  const auto image = medrefine::examples::read_image_file(options.image);
  RemoteSession session(connect);
  session.open(options.model, image);
  print_step("open", session);
  std::printf("head %s site_version %llu\n", session.head_source().c_str(),
              static_cast<unsigned long long>(session.site_version()));
  std::printf("undo_fresh %s\n", status_of([&] { session.undo(); }));
  std::size_t progress_events = 0;
  const auto result = session.refine(
      options.marks, [&](const medrefine::client::RefineProgress&) { ++progress_events; });
  print_step("refine", session);
  std::printf("refine iterations %u progress_events %zu received %zu\n", result.iterations,
              progress_events, result.progress.size());
  session.undo();
  print_step("undo", session);
  session.redo();
  print_step("redo", session);
  session.get_mask();
  print_step("get_mask", session);
  session.reset();
  print_step("reset", session);
  session.undo();
  print_step("undo_reset", session);
  const medrefine::client::SiteVersion accepted = session.accept();
  std::printf("accept version %llu images %u in_use %d checked %d classes %zu\n",
              static_cast<unsigned long long>(accepted.version), accepted.images,
              accepted.in_use ? 1 : 0, accepted.checked ? 1 : 0, accepted.class_names.size());
  std::printf("accept_again version %llu\n",
              static_cast<unsigned long long>(session.accept().version));
  const medrefine::client::SiteReport site = session.get_site(options.model);
  std::printf(
      "site versions %zu last %llu head %s\n", site.versions.size(),
      static_cast<unsigned long long>(site.versions.empty() ? 0 : site.versions.back().version),
      site.head_source.c_str());
  session.add(options.marks.front());
  std::printf("accept_pending %s\n", status_of([&] { session.accept(); }));
  const std::uint32_t label = session.add_class("lesion");
  std::printf("add_class label %u classes %zu\n", label, session.status().class_names.size());
  const std::string closed_id = session.session_id();
  session.close();
  std::printf("closed %d\n", session.session_id().empty() ? 1 : 0);
  try {  // a closed session cannot be reopened: NOT_FOUND with the server's reason
    medrefine::client::OpenOptions again;
    again.session_id = closed_id;
    session.open(options.model, image, again);
    std::printf("reopen_closed OK\n");
  } catch (const RemoteError& e) {
    std::printf("reopen_closed %s %s\n", e.code_name(),
                e.reason().empty() ? "-" : e.reason().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return walk(medrefine::examples::parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
