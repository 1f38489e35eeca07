#include "options.hpp"

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace medrefine::examples {
namespace {

constexpr const char* kUsage =
    "usage: medrefine_refine_file --target HOST:PORT --model NAME --image FILE.png|FILE.nii[.gz]\n"
    "                             --scribble LABEL:Y0,X0;Y1,X1;... (Z,Y,X in 3D; repeatable)\n"
    "                             [--radius PIXELS] [--token-file FILE] [--root-cert PEM]\n"
    "Opens a session on the image, prints the network mask's label counts, sends the scribbles,\n"
    "refines and prints the label counts after the refine and the round-trip ms of each call.\n";

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) parts.push_back(part);
  return parts;
}

int64_t parse_int(const std::string& text, const std::string& what) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) {
    throw std::invalid_argument(what + " must be an integer, got '" + text + "'");
  }
  return value;
}

}  // namespace

const char* usage() { return kUsage; }

client::Scribble parse_scribble(const std::string& text, int radius) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    throw std::invalid_argument("scribble '" + text + "' must read LABEL:Y0,X0;Y1,X1;...");
  }
  client::Scribble scribble;
  scribble.label = static_cast<int>(parse_int(text.substr(0, colon), "scribble label"));
  scribble.radius = radius;
  for (const std::string& point_text : split(text.substr(colon + 1), ';')) {
    if (point_text.empty()) continue;
    std::vector<int64_t> point;
    for (const std::string& c : split(point_text, ',')) point.push_back(parse_int(c, "coordinate"));
    if (point.size() != 2 && point.size() != 3) {
      throw std::invalid_argument("scribble point '" + point_text +
                                  "' needs 2 (y,x) or 3 (z,y,x) coordinates");
    }
    if (!scribble.points.empty() && scribble.points.front().size() != point.size()) {
      throw std::invalid_argument("all points of scribble '" + text + "' need as many coordinates");
    }
    scribble.points.push_back(point);
  }
  if (scribble.points.empty()) throw std::invalid_argument("scribble '" + text + "' has no point");
  return scribble;
}

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::string> scribble_texts;
  int radius = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value\n" + kUsage);
    const std::string value = argv[++i];
    if (flag == "--target") {
      options.target = value;
    } else if (flag == "--model") {
      options.model = value;
    } else if (flag == "--image") {
      options.image = value;
    } else if (flag == "--scribble") {
      scribble_texts.push_back(value);
    } else if (flag == "--radius") {
      radius = static_cast<int>(parse_int(value, "--radius"));
    } else if (flag == "--token-file") {
      options.token_file = value;
    } else if (flag == "--root-cert") {
      options.root_cert_file = value;
    } else {
      throw std::invalid_argument("unknown option " + flag + "\n" + kUsage);
    }
  }
  if (options.target.empty() || options.model.empty() || options.image.empty() ||
      scribble_texts.empty()) {
    throw std::invalid_argument(
        std::string("--target, --model, --image and --scribble are needed\n") + kUsage);
  }
  for (const std::string& text : scribble_texts) {
    options.scribbles.push_back(parse_scribble(text, radius));
  }
  return options;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string read_token_file(const std::string& path) {
  std::string token = read_text_file(path);
  token = token.substr(0, token.find('\n'));
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) throw std::runtime_error(path + ": the token file's first line is empty");
  return token;
}

}  // namespace medrefine::examples
