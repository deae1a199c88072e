"""Labeling functions for the YouTube Spam Collection (comment spam vs. ham).

Labels: HAM = 0 (a genuine comment about the video), SPAM = 1 (self-promotion,
links, requests for subscribers/likes, money schemes). Every LF votes for one
class or abstains.

The suite follows the LF kinds of the WRENCH YouTube benchmark (keyword_my,
keyword_subscribe, keyword_link, keyword_please, keyword_song, regex_check_out,
short_comment, has_person, textblob_polarity, textblob_subjectivity) and adds
a few more patterns seen in the training files (Youtube01-04). Spam is
formulaic, so most spam LFs are keyword or regex rules with near-perfect
precision; ham is varied, so the ham LFs lean on brevity, sentiment and talk
about the song, the artist and the view count.

Comments are raw YouTube text: they may contain HTML (``<br />``, ``<a href``),
HTML entities (``&#39;``) and a trailing byte-order mark, none of which the
patterns below depend on. Patterns use the Rust regex syntax of polars (no
look-around).
"""

import re
from functools import lru_cache

from textblob import TextBlob

from labelflow import ABSTAIN, keyword_lf, labeling_function, length_lf, regex_lf

HAM, SPAM = 0, 1

# Swearing and insults; spammers stay polite to their audience.
PROFANITY = re.compile(
    r"\b(fuck\w*|shit|sucks?|stupid|hate|wtf|dumb|crap|gay|ugly)\b", re.IGNORECASE
)

# Artists of the five videos in the collection plus their collaborators.
ARTISTS = re.compile(
    r"\b(psy|katy|perry|eminem|shakira|lmfao|redfoo|rihanna)\b", re.IGNORECASE
)


@lru_cache(maxsize=65_536)
def _sentiment(text: str):
    """TextBlob (polarity, subjectivity), cached because two LFs use it."""
    return TextBlob(text).sentiment


# --- SPAM -------------------------------------------------------------------

# Self-promotion: "my channel", "my new video", "my cover", ...
keyword_my = regex_lf(
    "keyword_my",
    r"\bmy (new |first |latest |own )?(channel|chanel|chanell|videos?|vids?|page|music|songs?"
    r"|youtube|cover|covers|playlist|blog|website|account|band|rap|track|mixtape)\b",
    label=SPAM,
)

# Asking for subscribers: "subscribe", "subscribers", "sub 4 sub", "subs", and
# misspellings such as "suscribe" / "sucscribe".
keyword_subscribe = regex_lf(
    "keyword_subscribe", r"\bsub(scrib\w*|s)?\b|\bsu\w{0,2}scri", label=SPAM
)

# Links and bare domains: "http://", "www.", "kidsmediausa.com".
keyword_link = regex_lf(
    "keyword_link", r"https?://|www\.|\.(com|net|org|ly|be|co)\b", label=SPAM
)

# Begging: "please", "plz", "pls" and common misspellings.
keyword_please = keyword_lf(
    "keyword_please", ["please", "plz", "pls", "plese", "plzz", "pleas"], label=SPAM
)

# "check out my channel", "check my video out", and YouTube's share templates
# "Check out this video on YouTube:" / "Take a look at this video on YouTube:".
regex_check_out = regex_lf(
    "regex_check_out", r"\bcheck\b.*\bout\b|\btake a look\b", label=SPAM
)

# Pointers to other platforms and calls to act on them.
keyword_promotion = keyword_lf(
    "keyword_promotion",
    [
        "facebook", "fb", "twitter", "instagram", "soundcloud", "tumblr", "blog",
        "website", "gofundme", "follow", "vote", "visit", "share", "click",
        "sign up", "register", "join", "search",
    ],
    label=SPAM,
)

# Money schemes and giveaways: "free", "make money", "$50", "gift cards".
regex_money = regex_lf(
    "regex_money",
    r"\b(free|money|cash|earn|dollars?|paid|gift ?cards?|give ?aways?|prize|income)\b|\$\d",
    label=SPAM,
)

# Like-farming: "like this comment", "thumbs up my comment", "give it a like",
# "like and subscribe". ("Thumbs up if you're watching in 2015" is mostly ham.)
regex_like_request = regex_lf(
    "regex_like_request",
    r"\b(like|thumbs up) (this|my) comment\b|\bgive (it|me|this) a like\b|\blike and subscribe\b",
    label=SPAM,
)

# Addressing the crowd, the opener of most promotional posts: "hey guys", "hi everyone".
regex_crowd_greeting = regex_lf(
    "regex_crowd_greeting",
    r"\b(hey|hi|hello|yo|sup)\b.{0,3}\b(guys|everyone|everybody|people|all|youtube)\b",
    label=SPAM,
)

# --- HAM --------------------------------------------------------------------

# Talk about the song itself: "this song", "best song", "love song" (a bare "song"
# also shows up in promotion of the spammer's own songs).
keyword_song = regex_lf(
    "keyword_song",
    r"\b(this|the|that|best|great|good|favou?rite|awesome|amazing|love|such a) songs?\b",
    label=HAM,
)

# Very short comments ("Amazing", "LMFAO!", "good party") are reactions, not ads.
short_comment = length_lf("short_comment", label=HAM, max=20)


@labeling_function()
def has_person(x):
    """Short comment naming the performer: "PSY is a good guy", "we love you Katy Perry".

    Stands in for WRENCH's NER-based has_person LF (no NER model is available).
    Long comments that name the artist are often spam riding on the name.
    """
    if len(x.text) <= 60 and ARTISTS.search(x.text):
        return HAM
    return ABSTAIN


# View-count chatter: "2 billion views", "most viewed video", "check the view count".
keyword_views = keyword_lf(
    "keyword_views",
    ["billion", "million", "views", "viewed", "viewer", "viewers", "view count", "dislikes"],
    label=HAM,
)

# Fans addressing the song or the artist: "I love this", "love you Katy", "I hate it".
regex_love_it = regex_lf(
    "regex_love_it",
    r"\bi (love|luv|loved|hate|like|liked) (this|it|her|him|you|u|that|the)\b"
    r"|\b(love|luv) (it|this|u|you|her|him)\b",
    label=HAM,
)

# Laughter and surprise: "lol", "xD", "hahaha", "omg", "wow".
regex_laughter = regex_lf(
    "regex_laughter", r"\b(lol|lool|xd|haha\w*|lmao|omg|wow|rofl)\b", label=HAM
)


@labeling_function()
def profanity(x):
    """Swearing or insults in a comment of at most 150 characters ("this song sucks").

    Long rants that swear are often spam pitches ("... stop hating, check out my music").
    """
    if len(x.text) <= 150 and PROFANITY.search(x.text):
        return HAM
    return ABSTAIN


@labeling_function()
def textblob_polarity(x):
    """Strongly positive comments ("Best song ever!") are fan reactions."""
    return HAM if _sentiment(x.text).polarity > 0.9 else ABSTAIN


@labeling_function()
def textblob_subjectivity(x):
    """Brief, subjective comments (opinions in a few words) are ham.

    WRENCH votes ham on subjectivity >= 0.5 alone; on this data that is barely
    better than chance (spam pitches are subjective too), so the LF is limited
    to comments of at most six words.
    """
    if _sentiment(x.text).subjectivity >= 0.5 and len(x.text.split()) <= 6:
        return HAM
    return ABSTAIN
