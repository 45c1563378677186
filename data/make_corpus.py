#!/usr/bin/env python3
"""make_corpus.py: compose data/generated.txt from the scenes in data/scenes/.

This is the tool that made part of Vesper's demo corpus; it is data
preparation, never part of the programs' path.  Every turn it uses was written
for Vesper, in French, in the scene files (see data/README.md for their
syntax).  The output is deterministic for a given seed, so that re-running it
reproduces the committed file byte for byte:

    python3 data/make_corpus.py > data/generated.txt

The output is in the Claire-Dialogue-French layout: one speaker turn a line,
`[Intervenant N:] text`, dialogues separated by a blank line, with the
occasional [PII], [NOISE] and [LAUGHTER] markers such transcripts carry.
"""

import argparse
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Pools shared by every scene; a scene may add its own with "slot:" lines.
# A slot is drawn once per dialogue, so a name stays the same throughout.
GLOBAL_SLOTS = {
    "prenom": "Marie | Julien | Sophie | Thomas | Camille | Nicolas | Léa | "
              "Antoine | Chloé | Mathieu | Inès | Hugo | Claire | Karim | "
              "Élodie | Pierre | Manon | Louis | Sarah | Bastien | Amélie | "
              "Yanis | Hélène | François | Zoé | Rémi | Nadia | Olivier",
    "prenom2": "Paul | Lucie | Vincent | Émilie | Damien | Julie | Samir | "
               "Aurélie | Guillaume | Margaux | Fabien | Océane | Jérôme | "
               "Anaïs | Cédric | Laura | Benoît | Céline",
    "nom": "Martin | Bernard | Dubois | Moreau | Laurent | Lefèvre | Roux | "
           "Fournier | Girard | Bonnet | Mercier | Blanc | Garnier | Chevalier | "
           "Perrin | Morel | Rousseau | Fontaine | Caron | Mathieu",
    "ville": "Lyon | Marseille | Bordeaux | Nantes | Lille | Toulouse | "
             "Strasbourg | Rennes | Montpellier | Grenoble | Dijon | Tours | "
             "Angers | Nancy | Rouen | Brest | Clermont-Ferrand | Limoges | "
             "Annecy | Besançon | Poitiers | Metz | Avignon | Nîmes",
    "jour": "lundi | mardi | mercredi | jeudi | vendredi | samedi",
    "heure": "huit heures | huit heures et demie | neuf heures | "
             "neuf heures et quart | dix heures | onze heures | midi | "
             "quatorze heures | quinze heures trente | seize heures | "
             "dix-sept heures | dix-huit heures | dix-huit heures quarante-cinq",
    "mois": "janvier | février | mars | avril | mai | juin | juillet | août | "
            "septembre | octobre | novembre | décembre",
    "petit_nombre": "deux | trois | quatre | cinq | six",
    "euros": "deux euros | trois euros cinquante | sept euros | douze euros | "
             "quinze euros | dix-huit euros | vingt-quatre euros | "
             "trente euros | quarante-cinq euros | soixante euros",
}

# Openers that people put in front of a turn when they speak; they lower the
# first letter of what follows.
FILLERS = ["Euh, ", "Ben, ", "Alors, ", "Bon, ", "Ah, ", "Oui, ", "Bah, ",
           "Écoutez, ", "Attendez, ", "Mh, "]
# Short back-channel turns, inserted now and then after a long turn.
BACKCHANNEL = ["Mh mh.", "D'accord.", "Oui.", "Ah oui ?", "Je vois.",
               "Ah bon.", "Oui, oui.", "Ouais.", "Ah d'accord.", "Hm."]


class Scene:
    def __init__(self, name):
        self.name = name
        self.slots = {}
        self.steps = []  # (group or None, role, linked, label, [alternatives])
        self.roles = set()
        self.labels = {}    # label -> number of alternatives
        self.weight = 1


def parse_alts(text):
    return [a.strip() for a in text.split("|") if a.strip()]


def load_scenes(path):
    scenes = []
    cur = None
    group = 0
    in_opt = False
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                in_opt = False
                continue
            if line.startswith("=== "):
                cur = Scene(line[4:].strip())
                scenes.append(cur)
                in_opt = False
                continue
            if cur is None:
                sys.exit(f"{path}:{lineno}: text before the first scene")
            if line.startswith("slot:"):
                name, _, alts = line[5:].partition("=")
                cur.slots[name.strip()] = alts
                continue
            if line.startswith("weight:"):
                cur.weight = int(line[7:])
                continue
            # "?A: ..." optional turn; consecutive ? lines are kept or dropped
            # together so that a question is never left without its answer.
            # "&B: ..." answers the turn before it: it takes the alternative
            # of the same rank, so that questions and answers written side
            # by side stay together.
            # "B@case: ..." shares its rank with every other turn labelled
            # @case in the scene, however far apart: a complaint and the
            # remedy given for it three turns later.
            m = re.match(r"^(\?)?(&)?([A-D])(?:@([a-z_]+))?:\s*(.*)$", line)
            if not m:
                sys.exit(f"{path}:{lineno}: cannot parse: {line!r}")
            if m.group(1):
                if not in_opt:
                    group += 1
                    in_opt = True
                g = group
            else:
                in_opt = False
                g = None
            alts = parse_alts(m.group(5))
            if not alts:
                sys.exit(f"{path}:{lineno}: a turn with no text")
            linked = m.group(2) is not None
            if linked and (not cur.steps or len(cur.steps[-1][4]) != len(alts)):
                sys.exit(f"{path}:{lineno}: '&' needs as many alternatives "
                         "as the turn before it")
            label = m.group(4)
            if label:
                n = cur.labels.setdefault(label, len(alts))
                if n != len(alts):
                    sys.exit(f"{path}:{lineno}: @{label} turns need the same "
                             "number of alternatives")
            cur.steps.append((g, m.group(3), linked, label, alts))
            cur.roles.add(m.group(3))
    return scenes


SLOT_RE = re.compile(r"\{([a-z_0-9]+)\}")
CONTRACTIONS = [(re.compile(r"\b" + a + r"(?= )"), b) for a, b in [
    ("à le", "au"), ("à les", "aux"), ("de le", "du"), ("de les", "des"),
    ("de des", "de"), ("de du", "de"), ("de de la", "de la")]]
SENT_START_RE = re.compile(r"(^|[.!?] )([a-zàâçéèêëîïôûùüÿœ])")


def fill(text, scene, chosen, rng, pii):
    def sub(m):
        key = m.group(1)
        if key not in chosen:
            pool = scene.slots.get(key, GLOBAL_SLOTS.get(key))
            if pool is None:
                sys.exit(f"scene {scene.name}: unknown slot {{{key}}}")
            chosen[key] = rng.choice(parse_alts(pool))
        if pii and key in ("prenom", "prenom2", "nom"):
            return "[PII]"
        return chosen[key]
    # A slot's value may itself hold slots ({heure} inside a time phrase).
    for _ in range(3):
        text = SLOT_RE.sub(sub, text)
    # French contracts a preposition with the article a slot brings:
    # "à {lieu}" with "le musée" is "au musée", "un kilo de {legume}" with
    # "des tomates" is "un kilo de tomates".
    for pat, rep in CONTRACTIONS:
        text = pat.sub(rep, text)
    # A slot value opening a sentence ("{boisson}, s'il vous plaît.") takes
    # a capital; "…" is left alone since speech often goes on after it.
    return SENT_START_RE.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def lower_first(s):
    return s[0].lower() + s[1:] if s and s[0].isupper() and \
        (len(s) < 2 or s[1].islower() or s[1] in " '") else s


def typeset(s):
    # French typography: curly apostrophe; the rest is written as intended.
    return s.replace("'", "\u2019")


def compose(scene, rng, names):
    chosen = {}
    pii = rng.random() < 0.08
    keep = {}
    roles = sorted(scene.roles)
    # Claire's transcripts mostly say "Intervenant N"; some keep first names.
    if rng.random() < 0.15:
        people = rng.sample(names, len(roles))
        tags = {r: f"[{p}:]" for r, p in zip(roles, people)}
    else:
        tags = {r: f"[Intervenant {i + 1}:]" for i, r in enumerate(roles)}
    out = []
    rank = 0
    ranks = {}
    for g, role, linked, label, alts in scene.steps:
        if g is not None:
            if g not in keep:
                keep[g] = rng.random() < 0.55
            if not keep[g]:
                continue
        if label:
            rank = ranks.setdefault(label, rng.randrange(len(alts)))
        elif not linked:
            rank = rng.randrange(len(alts))
        text = fill(alts[rank], scene, chosen, rng, pii)
        r = rng.random()
        if r < 0.07:
            text = rng.choice(FILLERS) + lower_first(text)
        elif r < 0.09:
            text = "[NOISE] " + text
        if rng.random() < 0.025:
            text += " [LAUGHTER]"
        if out and out[-1][0] == role:
            out[-1] = (role, out[-1][1] + " " + text)
        else:
            out.append((role, text))
        if len(text) > 90 and rng.random() < 0.15:
            other = [x for x in roles if x != role]
            if other:
                out.append((rng.choice(other), rng.choice(BACKCHANNEL)))
    return "\n".join(f"{tags[r]} {typeset(t)}" for r, t in out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--dialogues", type=int, default=600)
    ap.add_argument("--scenes", default=os.path.join(HERE, "scenes"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    scenes = []
    for fn in sorted(os.listdir(args.scenes)):
        if fn.endswith(".txt"):
            scenes += load_scenes(os.path.join(args.scenes, fn))
    if not scenes:
        sys.exit("no scenes found")
    names = parse_alts(GLOBAL_SLOTS["prenom"]) + parse_alts(GLOBAL_SLOTS["prenom2"])
    weights = [s.weight for s in scenes]
    seen = set()
    dialogues = []
    tries = 0
    while len(dialogues) < args.dialogues and tries < args.dialogues * 20:
        tries += 1
        d = compose(rng.choices(scenes, weights)[0], rng, names)
        if d in seen:
            continue
        seen.add(d)
        dialogues.append(d)
    sys.stdout.write("\n\n".join(dialogues) + "\n")


if __name__ == "__main__":
    main()
