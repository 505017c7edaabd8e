#include "cli/spec_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace kiln {
TEST(SpecFile, YamlScalarsKeepTheirTypes) {
  auto j = ParseYamlOrJson("a: 1\nb: 0.5\nc: '7'\nd: true\ne: hello\nf: [1, x]\n");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["a"], 1);
  EXPECT_EQ((*j)["b"], 0.5);
  EXPECT_EQ((*j)["c"], "7");
  EXPECT_EQ((*j)["d"], true);
  EXPECT_EQ((*j)["e"], "hello");
  EXPECT_EQ((*j)["f"][1], "x");
  EXPECT_FALSE(ParseYamlOrJson("a: [1, 2").ok());
}
TEST(SpecFile, RelativePathsResolveAgainstTheFile) {
  std::string dir = "/tmp/kiln-spec-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/job.yaml") << "name: x\ncode_dir: .\ninputs: {train: ./data, abs: /d, uri: file:///u}\n";
  auto j = LoadSpecFile(dir + "/job.yaml");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)["code_dir"], dir);
  EXPECT_EQ((*j)["inputs"]["train"], dir + "/data");
  EXPECT_EQ((*j)["inputs"]["abs"], "/d");
  EXPECT_EQ((*j)["inputs"]["uri"], "file:///u");
  std::filesystem::remove_all(dir);
}
}  // namespace kiln
