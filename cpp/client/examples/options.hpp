// Command line of medrefine_refine_file.
#pragma once

#include <string>
#include <vector>

#include "medrefine/client/remote_session.hpp"

namespace medrefine::examples {

/// What medrefine_refine_file was asked to do.
struct Options {
  std::string target;                       ///< server address, HOST:PORT
  std::string model;                        ///< zoo model name, e.g. "nuclei-unet2d"
  std::string image;                        ///< .png, .nii or .nii.gz file
  std::vector<client::Scribble> scribbles;  ///< one per --scribble, in order
  std::string token_file;                   ///< file whose first line is the bearer token
  std::string root_cert_file;               ///< PEM roots: connect with TLS when set
};

/// Parses a scribble written `label:y0,x0;y1,x1;...` (2D) or `label:z0,y0,x0;...` (3D), pixel
/// indices in array order, painted with `radius` pixels.
///
/// @throws std::invalid_argument naming what cannot be read.
client::Scribble parse_scribble(const std::string& text, int radius);

/// The usage text.
const char* usage();

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
