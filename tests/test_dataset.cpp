// Dataset readers: COCO captions, Karpathy split files, Flickr8k token files; bad input.
#include "testing.h"
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>

#include "satcap/data/dataset.h"
#include "satcap/runtime/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace satcap;

namespace {

void write_image(const fs::path& path, int value = 128) {
  fs::create_directories(path.parent_path());
  cv::Mat m(8, 10, CV_8UC3, cv::Scalar(value, value / 2, 255 - value));
  REQUIRE(cv::imwrite(path.string(), m));
}

json coco_json() {
  return json{{"images", {{{"id", 1}, {"file_name", "a.png"}, {"width", 10}, {"height", 8}},
                          {{"id", 2}, {"file_name", "b.png"}, {"width", 10}, {"height", 8}}}},
              {"annotations", {{{"id", 10}, {"image_id", 1}, {"caption", "A red square."}},
                               {{"id", 11}, {"image_id", 1}, {"caption", "A square, red!"}},
                               {{"id", 12}, {"image_id", 2}, {"caption", "Two blue things"}}}}};
}

// A COCO folder: captions.json beside images/.
fs::path coco_folder(const std::string& name, const json& j = coco_json()) {
  fs::path dir = fresh_temp_dir(name);
  write_image(dir / "images/a.png");
  write_image(dir / "images/b.png", 30);
  write_text_file(dir / "captions.json", j.dump());
  return dir;
}

std::string error_of(const std::string& path, const DatasetOptions& options = {}) {
  try {
    load_dataset(path, options);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

bool has_warning(const Dataset& d, const std::string& part) {
  for (const auto& w : d.warnings)
    if (w.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("COCO captions: images, captions, tokens, detected image root", "[data]") {
  fs::path dir = coco_folder("data_coco");
  Dataset d = load_dataset(dir.string());
  CHECK(d.format == DatasetFormat::coco);
  CHECK(d.image_root == dir / "images");
  REQUIRE(d.images.size() == 2);
  const ImageEntry* a = d.find(1);
  REQUIRE(a);
  CHECK(a->key == "a.png");
  CHECK(a->path == dir / "images/a.png");
  CHECK(a->width == 10);
  CHECK(a->height == 8);
  REQUIRE(a->captions.size() == 2);
  CHECK(a->captions[0].raw == "A red square.");
  CHECK(a->captions[0].tokens() == std::vector<std::string>{"a", "red", "square"});
  CHECK(d.find(3) == nullptr);
  auto refs = d.references();
  CHECK(refs[1].size() == 2);
  CHECK(refs[2] == std::vector<std::string>{"Two blue things"});
  CHECK(d.caption_count() == 3);
  CHECK(d.warnings.empty());
  // The split comes from the user, or from the file name (captions.json -> train).
  CHECK(d.images[0].split == "train");
  DatasetOptions o;
  o.split = "val";
  CHECK(load_dataset((dir / "captions.json").string(), o).split("val").size() == 2);
}

TEST_CASE("COCO captions are read entry by entry, whichever array comes first", "[data]") {
  // nlohmann writes keys sorted ("annotations" first); COCO's own files list "images" first. The
  // reader streams both arrays and attaches captions at once or after the images, as they come.
  const json j = coco_json();
  const std::string images_first = "{\"info\": {\"year\": 2014}, \"images\": " + j["images"].dump() +
                                   ", \"licenses\": [{\"id\": 1}], \"annotations\": " + j["annotations"].dump() + "}";
  fs::path a = coco_folder("data_order_a");
  fs::path b = coco_folder("data_order_b");
  write_text_file(b / "captions.json", images_first);
  REQUIRE(read_text_file(a / "captions.json").find("\"annotations\"") < read_text_file(a / "captions.json").find("\"images\""));
  const Dataset da = load_dataset(a.string());
  const Dataset db = load_dataset(b.string());
  CHECK(db.format == DatasetFormat::coco);
  REQUIRE(da.images.size() == db.images.size());
  for (std::size_t i = 0; i < da.images.size(); ++i) {
    CHECK(da.images[i].id == db.images[i].id);
    REQUIRE(da.images[i].captions.size() == db.images[i].captions.size());
    for (std::size_t k = 0; k < da.images[i].captions.size(); ++k) CHECK(da.images[i].captions[k].raw == db.images[i].captions[k].raw);
  }
  CHECK(db.references() == da.references());
  // An annotation of an unknown image is a warning at either position.
  json unknown = coco_json();
  unknown["annotations"].push_back({{"id", 13}, {"image_id", 99}, {"caption", "nowhere"}});
  write_text_file(b / "captions.json", "{\"images\": " + unknown["images"].dump() + ", \"annotations\": " +
                                           unknown["annotations"].dump() + "}");
  CHECK(has_warning(load_dataset(b.string()), "annotations[3]: image_id 99 is not in 'images'"));
  CHECK(has_warning(load_dataset(coco_folder("data_order_c", unknown).string()), "annotations[3]: image_id 99"));
  // Missing arrays and a top level that is not an object are named.
  write_text_file(b / "captions.json", "{\"images\": " + j["images"].dump() + "}");
  CHECK_THAT(error_of((b / "captions.json").string(), [] { DatasetOptions o; o.format = DatasetFormat::coco; return o; }()),
             Catch::Contains("top level: 'annotations' is missing"));
  write_text_file(b / "captions.json", "[{\"images\": []}]");
  CHECK_THAT(error_of((b / "captions.json").string(), [] { DatasetOptions o; o.format = DatasetFormat::coco; return o; }()),
             Catch::Contains("top level: is an array, expected an object"));
}

TEST_CASE("Karpathy split file: splits, restval, filepath, ids", "[data]") {
  fs::path dir = fresh_temp_dir("data_karpathy");
  write_image(dir / "val2014/x.png");
  write_image(dir / "val2014/y.png");
  write_image(dir / "train2014/z.png");
  json j{{"images",
          {{{"filepath", "val2014"}, {"filename", "x.png"}, {"split", "test"}, {"cocoid", 7},
            {"sentences", {{{"tokens", {"a", "cat"}}, {"raw", "A cat."}}}}},
           {{"filepath", "val2014"}, {"filename", "y.png"}, {"split", "restval"}, {"cocoid", 8},
            {"sentences", {{{"tokens", {"a", "dog"}}, {"raw", "A dog"}}}}},
           {{"filepath", "train2014"}, {"filename", "z.png"}, {"split", "train"}, {"cocoid", 9},
            {"sentences", {{{"tokens", {"two", "birds"}}}}}}}}};  // no raw: joined tokens
  write_text_file(dir / "dataset_coco.json", j.dump());
  Dataset d = load_dataset(dir.string());
  CHECK(d.format == DatasetFormat::karpathy);
  REQUIRE(d.images.size() == 3);
  CHECK(d.find(7)->split == "test");
  CHECK(d.find(7)->key == "val2014/x.png");
  CHECK(d.find(8)->split == "train");  // restval merged
  CHECK(d.find(9)->captions[0].raw == "two birds");
  CHECK(d.split("train").size() == 2);
  DatasetOptions keep;
  keep.merge_restval = false;
  CHECK(load_dataset((dir / "dataset_coco.json").string(), keep).find(8)->split == "restval");

  // Flickr-style: imgid, no filepath.
  fs::path fl = fresh_temp_dir("data_karpathy_flickr");
  write_image(fl / "Flicker8k_Dataset/1.jpg");
  json f{{"images", {{{"filename", "1.jpg"}, {"split", "val"}, {"imgid", 0}, {"sentences", {{{"raw", "hello there"}}}}}}}};
  write_text_file(fl / "dataset_flickr8k.json", f.dump());
  Dataset df = load_dataset((fl / "dataset_flickr8k.json").string());
  CHECK(df.image_root == fl / "Flicker8k_Dataset");
  CHECK(df.find(0)->split == "val");
}

TEST_CASE("COCO captions with a Karpathy split file", "[data]") {
  fs::path dir = coco_folder("data_coco_splitfile");
  json s{{"images", {{{"filename", "a.png"}, {"split", "val"}, {"cocoid", 1}, {"sentences", json::array()}}}}};
  write_text_file(dir / "splits.json", s.dump());
  DatasetOptions o;
  o.split_file = (dir / "splits.json").string();
  Dataset d = load_dataset(dir.string(), o);
  REQUIRE(d.images.size() == 1);  // image 2 is in no split
  CHECK(d.images[0].split == "val");
  CHECK(has_warning(d, "in no split"));
}

TEST_CASE("Flickr8k token file with split lists", "[data]") {
  fs::path dir = fresh_temp_dir("data_flickr8k");
  write_image(dir / "Flicker8k_Dataset/p.jpg");
  write_image(dir / "Flicker8k_Dataset/q.jpg");
  write_image(dir / "Flicker8k_Dataset/r.jpg");
  fs::path text = dir / "Flickr8k_text";
  write_text_file(text / "Flickr8k.token.txt",
                  "p.jpg#0\tA dog runs .\np.jpg#1\tThe dog is running\r\nq.jpg#0\tA cat\n\nr.jpg#0\tbirds\n"
                  "q.jpg#1\t \xff\xfe broken\nq.jpg#0\tduplicate\nq.jpg#2\t  ...  \n");
  write_text_file(text / "Flickr_8k.trainImages.txt", "p.jpg\n");
  write_text_file(text / "Flickr_8k.devImages.txt", "q.jpg\n");
  write_text_file(text / "Flickr_8k.testImages.txt", "r.jpg\n");
  Dataset d = load_dataset(text.string());
  CHECK(d.format == DatasetFormat::flickr8k);
  CHECK(d.image_root == dir / "Flicker8k_Dataset");
  REQUIRE(d.images.size() == 3);
  CHECK(d.images[0].key == "p.jpg");
  CHECK(d.images[0].split == "train");
  CHECK(d.images[1].split == "val");
  CHECK(d.images[2].split == "test");
  CHECK(d.images[0].captions.size() == 2);
  CHECK(d.images[0].captions[1].raw == "The dog is running");  // CR stripped
  CHECK(d.images[1].captions.size() == 1);
  CHECK(has_warning(d, "line 6: caption is not valid UTF-8"));
  CHECK(has_warning(d, "line 7: duplicate caption id 'q.jpg#0'"));
  CHECK(has_warning(d, "line 8: empty caption"));

  // A malformed line is an error naming it.
  write_text_file(text / "Flickr8k.token.txt", "p.jpg#0\tfine\nno tab here\n");
  CHECK_THAT(error_of(text.string()), Catch::Contains("line 2"));
}

TEST_CASE("Malformed JSON names the file and the byte", "[data]") {
  fs::path dir = coco_folder("data_truncated");
  std::string full = coco_json().dump();
  write_text_file(dir / "captions.json", full.substr(0, full.size() / 2));
  std::string e = error_of(dir.string());
  CHECK_THAT(e, Catch::Contains("captions.json") && Catch::Contains("malformed JSON at byte"));
  write_text_file(dir / "captions.json", "");
  CHECK_THAT(error_of((dir / "captions.json").string(), [] { DatasetOptions o; o.format = DatasetFormat::coco; return o; }()),
             Catch::Contains("malformed JSON"));
  // JSON is UTF-8 by definition: an invalid byte inside a caption is a parse error with its position.
  std::string bad = coco_json().dump();
  bad.replace(bad.find("Two"), 3, "T\xc3\x28");
  write_text_file(dir / "captions.json", bad);
  CHECK_THAT(error_of(dir.string()), Catch::Contains("malformed JSON at byte"));
  // Not a dataset at all.
  write_text_file(dir / "captions.json", "[1, 2, 3]");
  CHECK_THAT(error_of((dir / "captions.json").string()), Catch::Contains("not a dataset"));
}

TEST_CASE("Wrong types and missing keys name the entry", "[data]") {
  json j = coco_json();
  j["annotations"][2]["caption"] = 42;
  CHECK_THAT(error_of(coco_folder("data_types1", j).string()),
             Catch::Contains("captions.json: annotations[2]: 'caption' is not a string"));
  j = coco_json();
  j["images"][1].erase("file_name");
  CHECK_THAT(error_of(coco_folder("data_types2", j).string()), Catch::Contains("images[1]: 'file_name' is missing"));
  j = coco_json();
  j["images"][0]["id"] = "one";
  CHECK_THAT(error_of(coco_folder("data_types3", j).string()), Catch::Contains("images[0]: 'id' is not an integer"));
  j = coco_json();
  j["annotations"] = json::object();
  CHECK_THAT(error_of(coco_folder("data_types4", j).string()), Catch::Contains("'annotations' is not an array"));
  j = coco_json();
  j["annotations"][0] = "text";
  CHECK_THAT(error_of(coco_folder("data_types5", j).string()), Catch::Contains("annotations[0]: is a string"));
}

TEST_CASE("Empty captions, unknown images, duplicate ids, missing files", "[data]") {
  json j = coco_json();
  j["annotations"].push_back({{"id", 13}, {"image_id", 2}, {"caption", "   "}});
  j["annotations"].push_back({{"id", 14}, {"image_id", 99}, {"caption", "lost"}});
  j["annotations"].push_back({{"id", 10}, {"image_id", 2}, {"caption", "same id"}});
  fs::path dir = coco_folder("data_skips", j);
  Dataset d = load_dataset(dir.string());
  CHECK(has_warning(d, "annotations[3]: empty caption; skipped"));
  CHECK(has_warning(d, "annotations[4]: image_id 99 is not in 'images'"));
  CHECK(has_warning(d, "annotations[5]: duplicate annotation id 10"));
  CHECK(d.find(2)->captions.size() == 1);

  // Duplicate image ids: an error.
  j = coco_json();
  j["images"][1]["id"] = 1;
  CHECK_THAT(error_of(coco_folder("data_dup", j).string()), Catch::Contains("images[1]: duplicate image id 1"));

  // A missing image file: skipped with a warning, or an error when strict.
  fs::remove(dir / "images/b.png");
  Dataset m = load_dataset(dir.string());
  CHECK(m.images.size() == 1);
  CHECK(has_warning(m, "b.png: no such image file; skipped"));
  DatasetOptions strict;
  strict.strict = true;
  CHECK_THAT(error_of(dir.string(), strict), Catch::Contains("b.png: no such image file"));
  DatasetOptions nocheck;
  nocheck.check_images = false;
  CHECK(load_dataset(dir.string(), nocheck).images.size() == 2);
}

TEST_CASE("Image paths never leave the image root", "[data]") {
  fs::path outside = fresh_temp_dir("data_outside");
  write_image(outside / "secret.png");
  for (std::string bad : {std::string("../../data_outside/secret.png"), (outside / "secret.png").string(),
                          std::string("sub/../../x.png")}) {
    json j = coco_json();
    j["images"][1]["file_name"] = bad;
    std::string e = error_of(coco_folder("data_escape", j).string());
    INFO(bad);
    CHECK_THAT(e, Catch::Contains("captions.json: images[1]") && Catch::Contains("image root"));
  }
  // A symbolic link inside the root that points outside.
  fs::path dir = coco_folder("data_symlink");
  fs::create_directory_symlink(outside, dir / "images/link");
  json j = coco_json();
  j["images"][1]["file_name"] = "link/secret.png";
  write_text_file(dir / "captions.json", j.dump());
  CHECK_THAT(error_of(dir.string()), Catch::Contains("images[1]") && Catch::Contains("outside the image root"));
  // A harmless ".." that stays inside is accepted and normalised.
  j["images"][1]["file_name"] = "sub/../b.png";
  write_text_file(dir / "captions.json", j.dump());
  CHECK(load_dataset(dir.string()).find(2)->key == "b.png");
  // Karpathy filepath escaping too.
  fs::path k = fresh_temp_dir("data_escape_karpathy");
  json kj{{"images", {{{"filepath", ".."}, {"filename", "x.png"}, {"split", "train"}, {"imgid", 1}, {"sentences", json::array()}}}}};
  write_text_file(k / "dataset.json", kj.dump());
  CHECK_THAT(error_of(k.string()), Catch::Contains("dataset.json: images[0]") && Catch::Contains("leaves the image root"));
}

TEST_CASE("Format detection and bad paths", "[data]") {
  fs::path empty = fresh_temp_dir("data_detect_empty");
  CHECK_THAT(error_of(empty.string()), Catch::Contains("no dataset found"));
  CHECK_THAT(error_of((empty / "nope.json").string()), Catch::Contains("no such file"));
  CHECK_THROWS_AS(parse_enum<DatasetFormat>("xml", "--format"), UsageError);
  // A COCO layout: annotations/captions_val2014.json and val2014/.
  fs::path coco = fresh_temp_dir("data_detect_coco");
  write_image(coco / "val2014/a.png");
  write_image(coco / "val2014/b.png");
  write_text_file(coco / "annotations/captions_val2014.json", coco_json().dump());
  Dataset d = load_dataset(coco.string());
  CHECK(d.format == DatasetFormat::coco);
  CHECK(d.image_root == coco / "val2014");
  CHECK(d.images[0].split == "val");
  CHECK(d.warnings.empty());
}

TEST_CASE("UTF-8 validation", "[data]") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK_FALSE(is_valid_utf8("\xc3"));              // truncated
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xff"));
}
