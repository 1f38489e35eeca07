// medrefine_refine_file: open a session on a PNG or NIfTI file, send marks, refine, and print
// the label counts before and after with the round-trip time of every call.
//
// Output, one `key value...` line each (label counts as `label:pixels`, every class listed):
//   session <id> backend <name> features_cached <0|1>
//   open_ms <ms>
//   labels_before 0:<n> 1:<n> ...
//   add_ms <ms>                       (one line per mark)
//   refine_ms <ms>
//   refine iterations <n> satisfied <0|1> wrong_marks <n> marked_pixels <n> server_ms <ms>
//   labels_after 0:<n> 1:<n> ...
//   close_ms <ms>
// A failed call prints `error: <STATUS_NAME>: <message>` on stderr and exits with 2 (bad
// arguments or unreadable files: 64 and 66).
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>

#include "image_files.hpp"
#include "medrefine/client/remote_session.hpp"
#include "options.hpp"

namespace {

using medrefine::client::Mask;
using medrefine::client::RemoteSession;

constexpr int kExitRemote = 2;
constexpr int kExitUsage = 64;
constexpr int kExitNoInput = 66;

/// Prints `<name>_ms <milliseconds since start>`: the round trip of one call.
void print_ms(const char* name, std::chrono::steady_clock::time_point start) {
  const std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - start;
  std::printf("%s_ms %.1f\n", name, ms.count());
}

/// `<key> 0:<n> 1:<n> ...`: every class of the session, and any label beyond them.
void print_counts(const char* key, const Mask& mask, std::size_t classes) {
  std::map<unsigned, std::size_t> counts;
  for (std::size_t c = 0; c < classes; ++c) counts[static_cast<unsigned>(c)] = 0;
  for (std::uint16_t label : mask.labels) ++counts[label];
  std::printf("%s", key);
  for (const auto& [label, n] : counts) std::printf(" %u:%zu", label, n);
  std::printf("\n");
}

int run(const medrefine::examples::Options& options) {
  medrefine::client::ConnectOptions connect;
  connect.target = options.target;
  if (!options.token_file.empty()) {
    connect.bearer_token = medrefine::examples::read_token_file(options.token_file);
  }
  if (!options.root_cert_file.empty()) {
    connect.root_cert_pem = medrefine::examples::read_text_file(options.root_cert_file);
  }
  const medrefine::client::Image image = medrefine::examples::read_image_file(options.image);

  RemoteSession session(connect);
  auto start = std::chrono::steady_clock::now();
  session.open(options.model, image);
  print_ms("open", start);
  std::printf("session %s backend %s features_cached %d\n", session.session_id().c_str(),
              session.backend().c_str(), session.features_cached() ? 1 : 0);
  print_counts("labels_before", session.mask(), session.status().class_names.size());
  for (const auto& mark : options.marks) {
    start = std::chrono::steady_clock::now();
    session.add(mark);
    print_ms("add", start);
  }
  start = std::chrono::steady_clock::now();
  const medrefine::client::RefineResult result = session.refine();
  print_ms("refine", start);
  std::printf("refine iterations %u satisfied %d wrong_marks %u marked_pixels %u server_ms %.1f\n",
              result.iterations, result.satisfied ? 1 : 0, result.wrong_marks, result.marked_pixels,
              result.seconds * 1000.0);
  print_counts("labels_after", session.mask(), session.status().class_names.size());
  start = std::chrono::steady_clock::now();
  session.close();
  print_ms("close", start);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << medrefine::examples::usage();
      return 0;
    }
  }
  medrefine::examples::Options options;
  try {
    options = medrefine::examples::parse_options(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << e.what() << "\n";
    return kExitUsage;
  }
  try {
    return run(options);
  } catch (const medrefine::client::RemoteError& e) {
    std::cerr << "error: " << e.code_name() << ": " << e.message() << "\n";
    return kExitRemote;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitNoInput;
  }
}
