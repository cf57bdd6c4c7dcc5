// The caption grammar of the synthetic scenes (scenes.cpp): five different reference captions per
// scene that name its objects by size, colour and category, with their relations to each other and
// their places in the image. datasets/README.md describes the grammar. Private to the data layer.
#pragma once

#include <string>
#include <vector>

#include "data/scene_random.h"
#include "satcap/data/scenes.h"

namespace satcap {

// Five different captions of the objects placed in an image of side `size`: the first lists every
// object in full; with two or more objects the next two state relations between pairs; the rest
// are drawn from the other paraphrases.
std::vector<std::string> make_captions(Rng& rng, const std::vector<SceneObject>& objects, int size);

}  // namespace satcap
