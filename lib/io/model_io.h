// Reading and writing .onnx files.
//
// Load memory-maps the model (and any external-data files) and lifts tensor payloads out before
// protobuf sees the file, so a tensor's bytes are never copied on load: the IR borrows them from the
// map. Save streams the skeleton and the payloads to a temporary file that is renamed onto the target
// only when everything was written; a failure leaves no partial output.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/ir.h"
#include "util/file.h"
#include "util/sha256.h"

namespace mopt::io {

namespace fs = std::filesystem;

struct LoadInfo {
  fs::path path;
  uint64_t file_bytes = 0;           // the .onnx file
  uint64_t external_bytes = 0;       // bytes of external-data files the model references
  std::vector<fs::path> external_files;
};

// Throws mopt::Error with a one-line message for every kind of bad input.
std::unique_ptr<ir::Model> load_model(const fs::path& path, LoadInfo* info = nullptr);
// Parses a model held in memory (tests, tools). External data is not allowed here.
std::unique_ptr<ir::Model> load_model_from_bytes(const std::string& bytes);
// An independent copy of `model` whose tensors share their payloads with it (no tensor data is copied);
// for snapshots a pass can be rolled back to.
std::unique_ptr<ir::Model> clone_model(const ir::Model& model);

struct SaveOptions {
  // Tensors with at least this many payload bytes go to an external-data file beside the model.
  std::optional<uint64_t> external_data_threshold;
  // File name (in the output's folder) for external data; default "<output file name>.data".
  std::string external_data_name;
};

struct SaveInfo {
  uint64_t file_bytes = 0;
  uint64_t external_bytes = 0;
  fs::path external_file;  // empty when no tensor went external
};

// The external-data file name used when SaveOptions::external_data_name is empty: "<file name>.data".
std::string default_external_data_name(const fs::path& model_path);

// A model written and fsynced beside its target but not yet in place, so it can be committed together with
// other outputs (the report): commit() renames the external data, then the model; if the model's rename
// fails, the data file that was there before is put back (a model replaced in place never reads another
// version's weights). Destroying it uncommitted removes both temporary files.
class StagedModel {
 public:
  SaveInfo info;
  void commit();
  // The files holding the staged bytes (temporary names until commit), model first.
  std::vector<fs::path> files() const;
  // What each file will be once committed (its target path, bytes and sha256, hashed from the bytes written).
  std::vector<FileDigest> digests() const;

 private:
  friend StagedModel stage_model(const ir::Model&, const fs::path&, const SaveOptions&);
  std::unique_ptr<AtomicFileWriter> data_, model_;
  std::string model_sha256_, data_sha256_;
};
StagedModel stage_model(const ir::Model& model, const fs::path& path, const SaveOptions& options = {});

SaveInfo save_model(const ir::Model& model, const fs::path& path, const SaveOptions& options = {});
// The serialized model (no external data); throws if it would exceed protobuf's 2 GB limit.
std::string save_model_to_bytes(const ir::Model& model);

}  // namespace mopt::io
