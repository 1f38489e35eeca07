// Command line of medrefine_refine_file, and the mark syntax the client's test programs share.
#pragma once

#include <string>
#include <vector>

#include "medrefine/client/remote_session.hpp"

namespace medrefine::examples {

/// What medrefine_refine_file was asked to do.
struct Options {
  std::string target;               ///< server address, HOST:PORT
  std::string model;                ///< zoo model name, e.g. "nuclei-unet2d"
  std::string image;                ///< .png, .nii or .nii.gz file
  std::vector<client::Mark> marks;  ///< --scribble/--click/--box, in command-line order
  std::string token_file;           ///< file whose first line is the bearer token
  std::string root_cert_file;       ///< PEM roots: connect with TLS when set
};

/// The usage text.
const char* usage();

/// A scribble written `LABEL:Y0,X0;Y1,X1;...` (2D) or `LABEL:Z0,Y0,X0;...` (3D), pixel indices
/// in array order, painted with `radius` pixels.
///
/// @throws std::invalid_argument naming what cannot be read.
client::Scribble parse_scribble(const std::string& text, std::uint32_t radius);

/// A click written `LABEL:Y,X` or `LABEL:Z,Y,X`, with Python's default radius of 2 pixels.
client::Click parse_click(const std::string& text);

/// A box written `LABEL:Y0,X0:Y1,X1` (start inclusive, stop exclusive; Z first in 3D).
client::Box parse_box(const std::string& text);

/// Parses argv (without `--help`, which main() answers with usage()).
///
/// @throws std::invalid_argument naming a missing, unknown or malformed option.
Options parse_options(int argc, char** argv);

/// First line of `path`, trailing whitespace removed.
///
/// @throws std::runtime_error when the file cannot be read or is empty.
std::string read_token_file(const std::string& path);

/// Whole content of `path` (a PEM certificate bundle).
///
/// @throws std::runtime_error when the file cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace medrefine::examples
