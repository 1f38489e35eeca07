#include "options.hpp"

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace medrefine::examples {
namespace {

constexpr const char* kUsage =
    "usage: medrefine_refine_file --target HOST:PORT --model NAME --image FILE.png|FILE.nii[.gz]\n"
    "         MARK... [--radius PIXELS] [--token-file FILE] [--root-cert PEM]\n"
    "MARK (repeatable, sent in order; coordinates Y,X in 2D, Z,Y,X in 3D):\n"
    "  --scribble LABEL:Y0,X0;Y1,X1;...   a polyline, --radius pixels wide (default 1)\n"
    "  --click LABEL:Y,X                  a disk of radius 2\n"
    "  --box LABEL:Y0,X0:Y1,X1            LABEL lies inside [start, stop)\n"
    "Opens a session on the image, prints the network mask's label counts, sends the marks,\n"
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

/// `Y,X` or `Z,Y,X`.
std::vector<int64_t> parse_point(const std::string& text) {
  std::vector<int64_t> point;
  for (const std::string& c : split(text, ',')) point.push_back(parse_int(c, "coordinate"));
  if (point.size() != 2 && point.size() != 3) {
    throw std::invalid_argument("point '" + text + "' needs 2 (y,x) or 3 (z,y,x) coordinates");
  }
  return point;
}

/// Splits `LABEL:REST` into the label and the parts of REST separated by ':'.
std::uint32_t parse_label(const std::string& text, const char* syntax,
                          std::vector<std::string>* rest) {
  std::vector<std::string> parts = split(text, ':');
  if (parts.size() < 2) {
    throw std::invalid_argument("mark '" + text + "' must read " + syntax);
  }
  const int64_t label = parse_int(parts[0], "label");
  if (label < 0) throw std::invalid_argument("label must be >= 0, got " + parts[0]);
  rest->assign(parts.begin() + 1, parts.end());
  return static_cast<std::uint32_t>(label);
}

}  // namespace

const char* usage() { return kUsage; }

client::Scribble parse_scribble(const std::string& text, std::uint32_t radius) {
  std::vector<std::string> rest;
  client::Scribble scribble;
  scribble.label = parse_label(text, "LABEL:Y0,X0;Y1,X1;...", &rest);
  scribble.radius = radius;
  for (const std::string& point_text : split(rest.at(0), ';')) {
    if (point_text.empty()) continue;
    scribble.points.push_back(parse_point(point_text));
    if (scribble.points.front().size() != scribble.points.back().size()) {
      throw std::invalid_argument("all points of scribble '" + text + "' need as many coordinates");
    }
  }
  if (scribble.points.empty() || rest.size() != 1) {
    throw std::invalid_argument("scribble '" + text + "' must read LABEL:Y0,X0;Y1,X1;...");
  }
  return scribble;
}

client::Click parse_click(const std::string& text) {
  std::vector<std::string> rest;
  client::Click click;
  click.label = parse_label(text, "LABEL:Y,X", &rest);
  if (rest.size() != 1) throw std::invalid_argument("click '" + text + "' must read LABEL:Y,X");
  click.point = parse_point(rest[0]);
  return click;
}

client::Box parse_box(const std::string& text) {
  std::vector<std::string> rest;
  client::Box box;
  box.label = parse_label(text, "LABEL:Y0,X0:Y1,X1", &rest);
  if (rest.size() != 2)
    throw std::invalid_argument("box '" + text + "' must read LABEL:Y0,X0:Y1,X1");
  box.start = parse_point(rest[0]);
  box.stop = parse_point(rest[1]);
  return box;
}

Options parse_options(int argc, char** argv) {
  Options options;
  std::vector<std::pair<std::string, std::string>> marks;  // (flag, text), parsed after --radius
  std::uint32_t radius = 1;
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
    } else if (flag == "--scribble" || flag == "--click" || flag == "--box") {
      marks.emplace_back(flag, value);
    } else if (flag == "--radius") {
      const int64_t r = parse_int(value, "--radius");
      if (r < 0) throw std::invalid_argument("--radius must be >= 0");
      radius = static_cast<std::uint32_t>(r);
    } else if (flag == "--token-file") {
      options.token_file = value;
    } else if (flag == "--root-cert") {
      options.root_cert_file = value;
    } else {
      throw std::invalid_argument("unknown option " + flag + "\n" + kUsage);
    }
  }
  if (options.target.empty() || options.model.empty() || options.image.empty() || marks.empty()) {
    throw std::invalid_argument(
        std::string("--target, --model, --image and at least one mark are needed\n") + kUsage);
  }
  for (const auto& [flag, text] : marks) {
    if (flag == "--scribble") {
      options.marks.emplace_back(parse_scribble(text, radius));
    } else if (flag == "--click") {
      options.marks.emplace_back(parse_click(text));
    } else {
      options.marks.emplace_back(parse_box(text));
    }
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
