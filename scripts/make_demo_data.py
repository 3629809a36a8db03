"""Synthetic chat corpus for the bundled demo model (docs/demo-model.md).

The demo model lives in a narrow world: it greets, says honestly what it is, explains nanochat-tui
(keys, typed commands, flags, limits, loading your own checkpoint, the web mode) and does arithmetic
through nanochat's calculator tool. This module writes that world as conversations in nanochat's
message format ({"messages": [{"role", "content"}]}, assistant content either a string or a list of
parts {"type": "text" | "python" | "python_output", "text": ...}), deterministically from a seed.

Design choices (measured, see docs/demo-model.md):
- One canonical answer per intent and many paraphrases of each question, so greedy decoding gives
  a clean answer instead of a blend of several.
- Arithmetic with random operands over many question templates, so the model learns to copy the
  numbers into a `python` part rather than memorise examples; the tool output is computed by the
  project's own calculator (nanochat_core.calculator), i.e. exactly what the engine will insert.
- Questions outside the world get one honest refusal that points to nanochat.

Usage:  python scripts/make_demo_data.py --seed 1234 -n 20000 --out /tmp/demo.jsonl
The training script (scripts/train_demo.py) imports `generate_conversations` directly.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nanochat_core.calculator import calculate  # noqa: E402  (the engine's own tool)

# ---------------------------------------------------------------------------------------------
# Canonical answers

IDENTITY = (
    "I'm a tiny demo model bundled with nanochat-tui, not a trained nanochat. I was trained in a few "
    "minutes on a small synthetic set of conversations, so I only know how nanochat-tui works and how "
    "to do arithmetic with the calculator tool. To chat with a real model, train one with nanochat and "
    "point nanochat-tui at it."
)
OUT_OF_WORLD = (
    "Sorry, I can't help with that: I'm only a tiny demo model bundled with nanochat-tui, and I only "
    "know about this app and simple arithmetic. To chat with a real model, train one with nanochat and "
    "point nanochat-tui at it."
)
LOAD_CHECKPOINT = (
    "Train a model with nanochat: it saves checkpoints in its base directory, ~/.cache/nanochat (or "
    "NANOCHAT_BASE_DIR if set), for example chatsft_checkpoints/d20/model_XXXXXX.pt with its "
    "meta_XXXXXX.json, and the tokenizer in tokenizer/. nanochat-tui looks in the same place, so just "
    "run nanochat-tui. If your files are somewhere else, set NANOCHAT_BASE_DIR or pass --model-dir DIR. "
    "Choose a checkpoint with -i base|sft|rl, -g d20 and -s STEP."
)
WEB = (
    "nanochat-tui --web starts the browser mode: a small web server on port 8000 with a chat page. "
    "Open http://localhost:8000 in your browser. It uses the same model and engine as the terminal app."
)
KEYS = (
    "In the terminal app: Enter sends your message, Shift+Enter or Ctrl+J inserts a newline, "
    "Ctrl+Shift+N or Ctrl+N starts a new conversation, Esc stops the reply, Ctrl+R regenerates the "
    "last reply, Up edits your last message and Ctrl+Q quits."
)
COMMANDS = (
    "You can type these commands in the chat: /help lists them, /new or /clear starts a new "
    "conversation, /temperature 0.8 sets the temperature, /topk 40 sets top-k, /max-tokens 1024 sets "
    "the reply length, /system TEXT sets a system prompt and /stats shows the speed of the last reply. "
    "In the plain line chat, type quit or exit to leave and clear to start over."
)
FLAGS = (
    "The main flags: -p/--prompt TEXT answers once and exits, --plain starts a line chat, --web starts "
    "the browser mode, --model-dir DIR sets the base directory, -i/--source base|sft|rl, "
    "-g/--model-tag and -s/--step pick the checkpoint, -t/--temperature (default 0.6), -k/--top-k "
    "(default 50), -m/--max-tokens (default 512), --device-type cuda|cpu|mps, -d/--dtype "
    "bfloat16|float32, --system TEXT, --seed N and --softcap. Run nanochat-tui --help for details."
)
LIMITS = (
    "A message can have at most 8000 characters, and a conversation at most 500 messages and 32000 "
    "characters in total. Temperature goes from 0 to 2, top-k from 0 to 200 and max tokens from 1 to "
    "4096; a value outside its range is rejected with a message naming the range."
)
CAPABILITIES = (
    "I can greet you, explain nanochat-tui (keys, typed commands, command-line flags, limits, loading "
    "your own checkpoint, the web mode) and do arithmetic with the calculator tool, for example "
    "\"what is 37*12?\". For anything else, train a real model with nanochat and point nanochat-tui at it."
)
GREETING = (
    "Hello! I'm the tiny demo model bundled with nanochat-tui. I can explain how the app works or do "
    "some arithmetic with the calculator tool. What would you like to know?"
)

# (intent name, question paraphrases, answer)
INTENTS: list[tuple[str, list[str], str]] = [
    ("greet", [
        "hi", "hello", "hey", "hi there", "hello there", "hey there", "hiya", "yo", "howdy",
        "greetings", "good morning", "good afternoon", "good evening", "hi!", "hello!", "hey!",
        "hello, anyone there?", "hi, nice to meet you", "heya", "sup", "morning", "evening", "hi again",
        "hello friend", "hey hey", "greetings, friend", "hullo",
    ], GREETING),
    ("how_are_you", [
        "how are you?", "how are you doing?", "how's it going?", "are you ok?", "how do you feel?",
        "what's up?", "how are things?",
    ], "I'm fine, thanks for asking! I'm just a tiny demo model, but I'm ready to explain "
       "nanochat-tui or do some arithmetic with you."),
    ("identity", [
        "what are you?", "who are you?", "what is your name?", "what's your name?", "are you chatgpt?",
        "are you nanochat?", "are you a real model?", "tell me about yourself", "what model is this?",
        "introduce yourself", "which model am I talking to?", "are you an AI?", "are you a trained nanochat?",
        "what kind of model are you?", "describe yourself", "are you a demo?", "what are you exactly?",
        "is this a real language model?", "who am I talking to?", "are you GPT-4?",
    ], IDENTITY),
    ("how_trained", [
        "how were you trained?", "how big are you?", "how many parameters do you have?",
        "what data were you trained on?", "why are you so small?", "why do you know so little?",
        "why are your answers so limited?", "are you smart?",
    ], "I'm a very small model (a few layers, a few million parameters) trained for a few minutes on a "
       "CPU with the script scripts/train_demo.py, on synthetic conversations about nanochat-tui and "
       "arithmetic. That's why my knowledge is so narrow. A real nanochat model knows far more."),
    ("capabilities", [
        "what can you do?", "what do you know?", "help", "help me", "what can I ask you?",
        "what are you good at?", "what should I ask?", "what can you help me with?", "any tips?",
        "what topics do you know?",
    ], CAPABILITIES),
    ("what_is_app", [
        "what is nanochat-tui?", "what is this app?", "what does this app do?", "what is this program?",
        "tell me about nanochat-tui", "what is this?", "explain this app", "what am I using?",
    ], "nanochat-tui is a chat front-end for models trained with nanochat: a full-screen terminal app, a "
       "one-shot mode for scripts (--prompt), a plain line chat (--plain) and a browser mode (--web). "
       "One engine with a KV cache serves all of them."),
    ("what_is_nanochat", [
        "what is nanochat?", "tell me about nanochat", "who made nanochat?", "what's nanochat?",
        "explain nanochat",
    ], "nanochat is Andrej Karpathy's small, hackable project that trains a ChatGPT-like model end to "
       "end: tokenizer, pretraining, fine-tuning, evaluation and chat. nanochat-tui is a front-end for "
       "the checkpoints it produces."),
    ("train_nanochat", [
        "how do I train a model?", "how do I train my own model?", "how do I train a nanochat model?",
        "how can I get a real model?", "how do I make a better model?", "where do I get a checkpoint?",
    ], "Clone nanochat and follow its README: its speedrun script trains a tokenizer, pretrains, "
       "fine-tunes and saves checkpoints under ~/.cache/nanochat. Then run nanochat-tui and it loads "
       "your model instead of me."),
    ("load_checkpoint", [
        "how do I load my own checkpoint?", "how do I use my own model?", "how do I chat with my model?",
        "how do I load a checkpoint?", "how do I point nanochat-tui at my model?",
        "how do I use a model I trained?", "can I use my own checkpoint?", "how do I load my nanochat model?",
        "where does nanochat-tui look for models?", "where do checkpoints go?", "how do I switch models?",
        "how do I load a different model?", "how do I chat with a model I trained with nanochat?",
        "where should I put my checkpoint?",
    ], LOAD_CHECKPOINT),
    ("why_demo", [
        "why am I talking to the demo model?", "why did it load the demo model?",
        "why is the demo model loaded?", "why don't I see my model?", "it says using the bundled demo model, why?",
    ], "Because no checkpoint was found in ~/.cache/nanochat (or in NANOCHAT_BASE_DIR or --model-dir). "
       "Train a model with nanochat, or point nanochat-tui at your base directory with --model-dir DIR, "
       "and it will load your checkpoint instead."),
    ("env_var", [
        "what is NANOCHAT_BASE_DIR?", "what does NANOCHAT_BASE_DIR do?", "which environment variable sets the model directory?",
        "what is the base directory?", "what is ~/.cache/nanochat?",
    ], "NANOCHAT_BASE_DIR is nanochat's base directory, the folder that holds tokenizer/ and the "
       "checkpoint folders (base_checkpoints, chatsft_checkpoints, chatrl_checkpoints). When it is not "
       "set, nanochat and nanochat-tui use ~/.cache/nanochat. --model-dir DIR overrides both."),
    ("versions", [
        "which nanochat versions are supported?", "does it work with old checkpoints?",
        "can it load older nanochat models?", "which checkpoints can it load?", "does it support every nanochat version?",
    ], "Checkpoints from every nanochat era load, from the first release to today's architecture; the "
       "generation is detected from the files. Base, SFT and RL checkpoints all work."),
    ("gpu", [
        "does it run on a GPU?", "can I use my GPU?", "does it need a GPU?", "does it run on CPU?",
        "can it run on a mac?", "how do I use cuda?",
    ], "It runs on CUDA GPUs (in bfloat16 by default), on CPU (in float32) and on Apple's mps. The "
       "device is detected automatically; choose it with --device-type cuda|cpu|mps and the precision "
       "with -d bfloat16|float32."),
    ("web", [
        "what does --web do?", "how do I use the web mode?", "is there a web interface?",
        "can I chat in a browser?", "how do I start the web ui?", "what is the web mode?",
        "how do I open it in my browser?", "which port does the web mode use?", "what does nanochat-tui --web do?",
        "can I use it from my laptop's browser?",
    ], WEB),
    ("keys", [
        "what are the keyboard shortcuts?", "which keys can I use?", "what are the keys?",
        "list the key bindings", "what shortcuts are there?", "how do I use the keyboard?",
        "what are the hotkeys?", "key bindings?",
    ], KEYS),
    ("key_send", [
        "how do I send a message?", "how do I send?", "which key sends my message?", "how do I submit?",
    ], "Press Enter to send your message."),
    ("key_newline", [
        "how do I insert a newline?", "how do I write several lines?", "how do I add a new line without sending?",
        "how do I type a multi-line message?", "what does Ctrl+J do?", "what does Shift+Enter do?",
    ], "Press Shift+Enter or Ctrl+J to insert a newline; Enter sends the message. Some terminals do not "
       "report Shift+Enter, so Ctrl+J always works."),
    ("key_new", [
        "how do I start a new conversation?", "how do I start a new chat?", "how do I reset the chat?",
        "how do I clear the conversation?", "how do I start over?", "new conversation?",
        "how do I forget the history?", "what does Ctrl+N do?", "how do I begin a fresh conversation?",
        "how do I clear the screen?",
    ], "Press Ctrl+Shift+N (or Ctrl+N) in the terminal app, or type /new or /clear. In the plain line "
       "chat, type clear."),
    ("key_stop", [
        "how do I stop the reply?", "how do I stop generation?", "how do I cancel a reply?",
        "what does Esc do?", "the answer is too long, how do I stop it?", "how do I interrupt you?",
    ], "Press Esc to stop the reply while it is being generated. In one-shot mode, Ctrl+C stops it."),
    ("key_regen", [
        "how do I regenerate a reply?", "how do I get another answer?", "what does Ctrl+R do?",
        "how do I retry?", "can I regenerate the last answer?",
    ], "Press Ctrl+R to regenerate the last reply. With a temperature above 0 you get a different answer."),
    ("key_edit", [
        "how do I edit my last message?", "can I edit my message?", "how do I fix a typo in my last message?",
        "what does the Up key do?", "how do I change what I sent?",
    ], "Press Up to edit your last message, then Enter to send it again."),
    ("key_quit", [
        "how do I quit?", "how do I exit?", "how do I close the app?", "how do I leave?",
        "what does Ctrl+Q do?", "how do I get out of here?", "how do I stop the program?",
    ], "Press Ctrl+Q to quit the terminal app. In the plain line chat, type quit or exit, or press Ctrl+D."),
    ("commands", [
        "what commands are there?", "what can I type?", "list the commands", "what slash commands are there?",
        "what does /help do?", "which commands can I use?", "what are the chat commands?",
    ], COMMANDS),
    ("cmd_temperature", [
        "how do I change the temperature?", "what is the temperature?", "how do I set the temperature?",
        "what does /temperature do?", "what does -t do?", "what does --temperature do?",
        "how do I make the answers more random?", "how do I make replies deterministic?",
    ], "Type /temperature followed by a value from 0 to 2, for example /temperature 0.8, or start the "
       "app with -t 0.8 (--temperature). The default is 0.6; 0 means greedy decoding, always the most "
       "likely token."),
    ("cmd_topk", [
        "how do I change top-k?", "what is top-k?", "what does /topk do?", "what does -k do?",
        "what does --top-k do?", "how do I set top k?",
    ], "Type /topk followed by a number from 0 to 200, for example /topk 40, or start the app with -k 40 "
       "(--top-k). Sampling then picks only among the 40 most likely tokens. The default is 50; 0 means "
       "the full vocabulary."),
    ("cmd_max_tokens", [
        "how do I make replies longer?", "how do I change the maximum reply length?", "what does /max-tokens do?",
        "what does -m do?", "what does --max-tokens do?", "why was my reply cut off?", "how long can a reply be?",
    ], "Type /max-tokens followed by a number from 1 to 4096, for example /max-tokens 1024, or start "
       "the app with -m 1024 (--max-tokens). The default is 512 tokens per reply."),
    ("cmd_system", [
        "how do I set a system prompt?", "what does /system do?", "what does --system do?",
        "can I give you instructions?", "how do I add a system message?",
    ], "Type /system followed by your text, or start the app with --system \"your text\". As in "
       "nanochat, the system message is added to the start of your first message."),
    ("cmd_stats", [
        "how fast are you?", "what does /stats do?", "how do I see the speed?", "how do I see tokens per second?",
        "how many tokens per second?",
    ], "Type /stats to see the last reply's statistics: tokens generated, tokens per second and time to "
       "first token. nanochat-tui bench measures speed more carefully."),
    ("cmd_help", [
        "how do I get help?", "where is the help?", "how do I see all options?", "is there a manual?",
    ], "Type /help in the app to list the commands, or run nanochat-tui --help to see every flag."),
    ("flags", [
        "what command line flags are there?", "what options does nanochat-tui have?", "list the flags",
        "what are the command line options?", "which flags can I use?", "what arguments does it take?",
        "what flags are there?",
    ], FLAGS),
    ("flag_prompt", [
        "what does --prompt do?", "what does -p do?", "how do I ask one question from a script?",
        "how do I use it in a script?", "can I pipe a question in?", "how do I get a single answer and exit?",
        "is there a one-shot mode?",
    ], "nanochat-tui -p \"your question\" (or --prompt) prints one reply to stdout and exits, handy in "
       "scripts and pipes. Use --prompt - to read the prompt from stdin."),
    ("flag_plain", [
        "what does --plain do?", "is there a simple mode?", "how do I chat without the full-screen app?",
        "what is the plain mode?", "what is the line chat?",
    ], "nanochat-tui --plain starts a simple line chat instead of the full-screen app: you type after "
       "\"User:\" and the reply follows \"Assistant:\". Type quit or exit to leave and clear to start "
       "over. It is also used automatically when input or output is not a terminal."),
    ("flag_model_dir", [
        "what does --model-dir do?", "how do I use --model-dir?", "my checkpoints are in another folder, what now?",
    ], "--model-dir DIR points nanochat-tui at a nanochat base directory, the folder that holds "
       "tokenizer/ and chatsft_checkpoints/. Without it, nanochat-tui uses NANOCHAT_BASE_DIR, then "
       "~/.cache/nanochat."),
    ("flag_source", [
        "what does --source do?", "what does -i do?", "how do I load a base model?", "how do I load the rl model?",
        "what is the difference between base, sft and rl?",
    ], "-i or --source picks which checkpoints to load: base (base_checkpoints, the pretrained model), "
       "sft (chatsft_checkpoints, the chat model, the default) or rl (chatrl_checkpoints)."),
    ("flag_tag", [
        "what does --model-tag do?", "what does -g do?", "what is a model tag?", "how do I choose d20?",
    ], "-g or --model-tag picks the model tag, the sub-directory such as d20. Without it, nanochat-tui "
       "takes the largest dNN tag, like nanochat does."),
    ("flag_step", [
        "what does --step do?", "what does -s do?", "how do I load an older step?", "how do I pick a checkpoint step?",
    ], "-s or --step picks the checkpoint step: -s 700 loads model_000700.pt. Without it, the largest "
       "step is used."),
    ("flag_device", [
        "what does --device-type do?", "how do I force the cpu?", "how do I choose the device?",
    ], "--device-type cuda, cpu or mps chooses where the model runs; when it is omitted the device is "
       "detected automatically."),
    ("flag_dtype", [
        "what does --dtype do?", "what does -d do?", "should I use bfloat16 or float32?",
        "why float32 on cpu?",
    ], "-d or --dtype bfloat16|float32 sets the compute precision. The default is bfloat16 on CUDA and "
       "float32 on CPU, where bfloat16 is usually slower and less exact."),
    ("flag_seed", [
        "what does --seed do?", "how do I get reproducible answers?", "how do I fix the random seed?",
    ], "--seed N fixes the random seed for sampling, so the same prompt and settings give the same reply. "
       "Temperature 0 is deterministic anyway."),
    ("flag_softcap", [
        "what does --softcap do?", "what is the softcap?", "when do I need --softcap 20?",
    ], "--softcap 20 overrides the logit softcap for nanochat checkpoints trained with softcap 20 (March "
       "2026), which cannot be told apart from the files. The default is 15, which is right for every "
       "other checkpoint."),
    ("limits", [
        "what are the limits?", "how long can a message be?", "how many messages can a conversation have?",
        "is there a maximum message length?", "what is the maximum temperature?", "what is the range of top-k?",
        "what are the allowed values?", "what is the character limit?", "can I paste a very long text?",
        "what is the max number of tokens?",
    ], LIMITS),
    ("bench", [
        "how do I benchmark?", "how do I measure the speed?", "what does nanochat-tui bench do?",
    ], "nanochat-tui bench --prompt-tokens 512 --decode-tokens 128 measures time to first token and "
       "decode speed on your device and prints a JSON summary."),
    ("calculator", [
        "can you do math?", "can you calculate?", "how does the calculator tool work?", "do you have a calculator?",
        "can you do arithmetic?", "what is the calculator tool?", "how do you do math?",
    ], "Yes, I do arithmetic with nanochat's calculator tool: I write the expression between "
       "<|python_start|> and <|python_end|>, the app computes it and inserts the result, and I tell you "
       "the answer. Try \"what is 37*12?\"."),
    ("thanks", [
        "thanks", "thank you", "thanks!", "thank you very much", "great, thanks", "cool, thanks",
        "ok thanks", "perfect", "nice", "awesome", "got it", "ok", "okay", "cool", "many thanks",
        "thanks a lot", "much appreciated", "cheers", "thx", "ty", "that helps, thanks", "great",
    ], "You're welcome! Ask me anything about nanochat-tui, or give me some arithmetic."),
    ("bye", [
        "bye", "goodbye", "see you", "bye!", "see you later", "good night", "i'm done", "that's all",
        "later", "ciao", "farewell", "catch you later", "gotta go", "bye bye", "i'm leaving now",
    ], "Goodbye! Press Ctrl+Q to quit the app (or type quit in the plain line chat)."),
    ("who_made", [
        "who made you?", "who created you?", "who trained you?", "who built nanochat-tui?",
    ], "I was trained by a script in the nanochat-tui repository (scripts/train_demo.py) from synthetic "
       "data it generates. nanochat itself is Andrej Karpathy's project."),
]


# Generic paraphrases: per intent, verb phrases ("how do I <action>?") and things it is about
# ("what does <subject> do?"). They teach the model to key on the content words, not on one phrasing.
ACTIONS_AND_SUBJECTS: dict[str, tuple[list[str], list[str]]] = {
    "how_trained": (["see how you were trained"], ["your training", "your size", "your training data"]),
    "what_is_app": (["find out what this app is"], ["nanochat-tui", "this app", "this program", "this tool"]),
    "what_is_nanochat": (["learn about nanochat"], ["nanochat", "Karpathy's nanochat"]),
    "train_nanochat": (["train a model", "train my own model", "get a real model", "make a better model",
                        "get a checkpoint", "train a nanochat model", "make my own model"], ["training a model"]),
    "load_checkpoint": (["load my own checkpoint", "use my own model", "use a checkpoint I trained myself",
                         "chat with my own model", "load a model I trained", "use my nanochat checkpoint",
                         "run my trained model", "load my sft checkpoint", "point the app at my model",
                         "load a checkpoint", "use a different model", "talk to my own model",
                         "find where checkpoints are stored"],
                        ["loading checkpoints", "custom checkpoints", "my own checkpoint", "checkpoints",
                         "where checkpoints are stored", "chatsft_checkpoints"]),
    "why_demo": (["get rid of the demo model", "stop using the demo model"], ["the demo model notice"]),
    "env_var": (["set the base directory", "change where models are loaded from"],
                ["NANOCHAT_BASE_DIR", "~/.cache/nanochat", "the base directory", "the base dir"]),
    "versions": (["load an old nanochat checkpoint", "use an older nanochat model"],
                 ["old checkpoints", "nanochat versions", "checkpoint compatibility"]),
    "gpu": (["run it on a GPU", "use cuda", "run it on a mac", "run on the CPU", "use my graphics card"],
            ["GPU support", "cuda", "mps", "the gpu"]),
    "web": (["use the web mode", "chat in my browser", "run it in the browser", "start the web server",
             "open the web ui", "use the browser interface", "serve the model on the web"],
            ["--web", "the web mode", "the browser mode", "the web ui", "the web interface", "web mode",
             "the web server"]),
    "keys": (["use the keyboard", "see the shortcuts", "learn the key bindings"],
             ["the keyboard shortcuts", "the key bindings", "the hotkeys", "the keys", "shortcuts"]),
    "key_send": (["send a message", "send my message", "submit my message", "send what I typed"],
                 ["Enter", "the Enter key"]),
    "key_newline": (["insert a newline", "write several lines", "type a multi-line message", "add a line break",
                     "write on two lines"], ["Shift+Enter", "Ctrl+J", "newlines"]),
    "key_new": (["start a new conversation", "start a new chat", "reset the conversation", "clear the chat",
                 "start over", "begin a new chat", "wipe the history", "open a fresh conversation",
                 "have a new chat", "clear the history", "reset the chat"],
                ["Ctrl+N", "Ctrl+Shift+N", "/new", "/clear", "the new command", "the clear command",
                 "new conversations"]),
    "key_stop": (["stop the reply", "stop generating", "cancel a reply", "interrupt the model", "stop the answer",
                  "stop you", "abort the generation"], ["Esc", "the Escape key", "escape"]),
    "key_regen": (["regenerate a reply", "regenerate the last answer", "get a different answer",
                   "retry the last reply", "redo the answer"], ["Ctrl+R", "regenerating"]),
    "key_edit": (["edit my last message", "change my last message", "fix my last message", "resend my last message",
                  "correct my message"], ["the Up key", "the Up arrow", "Up", "editing messages"]),
    "key_quit": (["quit", "exit", "close the app", "leave the app", "exit the program", "quit nanochat-tui",
                  "get out", "close nanochat-tui"], ["Ctrl+Q", "Ctrl+D", "quitting", "the quit command"]),
    "commands": (["see the commands", "use slash commands", "type a command"],
                 ["the commands", "the slash commands", "the chat commands", "typed commands", "/help"]),
    "cmd_temperature": (["change the temperature", "set the temperature", "make replies more creative",
                         "make answers deterministic", "make replies more random", "lower the temperature"],
                        ["/temperature", "-t", "--temperature", "the temperature", "temperature",
                         "the temperature setting"]),
    "cmd_topk": (["change top-k", "set top k", "change the top-k setting"],
                 ["/topk", "-k", "--top-k", "top-k", "top k", "the top-k setting"]),
    "cmd_max_tokens": (["make replies longer", "change the reply length", "limit the reply length",
                        "get longer answers", "get shorter answers", "change max tokens"],
                       ["/max-tokens", "-m", "--max-tokens", "max tokens", "the max tokens setting"]),
    "cmd_system": (["set a system prompt", "give the model instructions", "add a system message",
                    "change the system prompt"], ["/system", "--system", "the system prompt", "system messages"]),
    "cmd_stats": (["see the speed", "see how fast you are", "measure tokens per second", "see the stats"],
                  ["/stats", "the /stats command", "the stats command", "stats"]),
    "cmd_help": (["get help", "see all commands", "see every flag", "read the help"], ["--help", "the help"]),
    "flags": (["see all the flags", "configure nanochat-tui", "see the options"],
              ["the flags", "the command line options", "the command-line flags", "the options", "flags"]),
    "flag_prompt": (["ask one question from a script", "use it in a script", "get a single answer and exit",
                     "pipe a prompt in", "run a one-shot prompt"], ["--prompt", "-p", "the one-shot mode"]),
    "flag_plain": (["chat without the full-screen app", "use a simple line chat", "use the plain mode"],
                   ["--plain", "the plain mode", "the line chat", "plain mode"]),
    "flag_model_dir": (["use a checkpoint in another folder", "set the model directory"], ["--model-dir"]),
    "flag_source": (["load a base model", "load the rl model", "load the sft model", "choose base, sft or rl"],
                    ["--source", "-i", "the source flag", "sources"]),
    "flag_tag": (["choose the model tag", "pick d20", "load a different tag"], ["--model-tag", "-g", "model tags"]),
    "flag_step": (["load an older step", "pick a checkpoint step", "choose the step"],
                  ["--step", "-s", "the step flag", "checkpoint steps"]),
    "flag_device": (["force the cpu", "choose the device", "pick the device"], ["--device-type", "the device type"]),
    "flag_dtype": (["change the precision", "use float32", "use bfloat16"], ["--dtype", "-d", "bfloat16", "the dtype"]),
    "flag_seed": (["get reproducible answers", "fix the random seed", "set a seed"], ["--seed", "the seed"]),
    "flag_softcap": (["change the softcap"], ["--softcap", "the softcap", "softcap 20"]),
    "limits": (["send a very long message", "paste a long text", "know the limits"],
               ["the limits", "the message limit", "the character limit", "the allowed ranges", "limits"]),
    "bench": (["benchmark the model", "measure the speed", "run a benchmark"],
              ["nanochat-tui bench", "the bench command", "benchmarking"]),
    "calculator": (["do math", "calculate things", "use the calculator"],
                   ["the calculator tool", "the calculator", "tool use", "arithmetic"]),
}

# Questions that contain numbers but are not arithmetic ({t} temperature, {k} top-k, {n} any count).
NUMERIC_QUESTIONS: dict[str, list[str]] = {
    "cmd_temperature": ["can I set the temperature to {t}?", "set temperature to {t}", "is temperature {t} allowed?",
                        "what happens if I set the temperature to {t}?", "how do I use temperature {t}?",
                        "what does -t {t} do?"],
    "cmd_topk": ["can I use top-k {k}?", "set top-k to {k}", "what does top-k {k} mean?", "what does -k {k} do?",
                 "is top k {k} allowed?"],
    "cmd_max_tokens": ["can I get replies of {n} tokens?", "set max tokens to {n}", "how do I allow {n} tokens?",
                       "what does -m {n} do?", "can a reply have {n} tokens?"],
    "flag_step": ["how do I load step {n}?", "how do I pick model_{n6}.pt?", "load checkpoint step {n}",
                  "what does -s {n} do?", "how do I use the step {n} checkpoint?"],
    "flag_tag": ["how do I load d{d}?", "how do I pick the d{d} model?", "what does -g d{d} do?"],
    "limits": ["can I send a message with {n} characters?", "can a conversation have {n} messages?",
               "is {n} characters too long?", "can I paste {n} characters?"],
    "flag_seed": ["how do I use seed {n}?", "what does --seed {n} do?"],
    "load_checkpoint": ["how do I load my d{d} checkpoint?", "I trained a d{d} model, how do I load it?"],
}
_TEMPERATURES = ["0", "0.1", "0.2", "0.5", "0.6", "0.7", "0.8", "0.9", "1", "1.0", "1.2", "1.5", "2", "3", "5", "10"]


def _numeric_question(name: str, rng: random.Random) -> str | None:
    templates = NUMERIC_QUESTIONS.get(name)
    if not templates:
        return None
    n = rng.choice([rng.randint(0, 100), rng.randint(100, 10000), rng.randint(10000, 100000)])
    return rng.choice(templates).format(t=rng.choice(_TEMPERATURES), k=rng.randint(0, 500), n=n,
                                        n6=f"{n:06d}", d=rng.choice([4, 8, 12, 16, 20, 24, 26, 32]))


# Word-level rewording of intent questions: synonyms, fillers, dropped little words. Flags and
# commands ("--prompt", "/new") are never touched (a word must not touch '-', '/' or '_').
_SYNONYMS = [
    ["conversation", "chat", "session", "discussion"],
    ["reply", "answer", "response"],
    ["message", "question", "text"],
    ["app", "program", "tool", "tui", "application"],
    ["quit", "exit", "leave", "close"],
    ["start", "begin", "open"],
    ["new", "fresh", "different"],
    ["stop", "halt", "cancel", "interrupt"],
    ["change", "set", "modify", "adjust"],
    ["see", "show", "view", "display"],
    ["last", "previous"],
    ["keys", "shortcuts", "hotkeys"],
    ["flags", "options", "arguments", "switches"],
    ["limit", "maximum", "max"],
    ["directory", "folder", "dir"],
    ["model", "checkpoint", "network"],
    ["trained", "made", "built"],
    ["browser", "web browser"],
    ["mode", "interface"],
]
_SYN_INDEX = {w: group for group in _SYNONYMS for w in group}
_FILLERS = ["actually", "just", "exactly", "again", "here", "now", "really", "even", "please", "quickly"]
_DROPPABLE = {"the", "a", "my", "your", "please", "do", "to"}
_WORD = re.compile(r"(?<![\w/_-])[A-Za-z]+(?![\w/_-])")


def _reword(q: str, rng: random.Random) -> str:
    def swap(m: re.Match) -> str:
        w = m.group(0)
        group = _SYN_INDEX.get(w.lower())
        if group and rng.random() < 0.3:
            new = rng.choice(group)
            return new.capitalize() if w[:1].isupper() else new
        return w
    q = _WORD.sub(swap, q)
    words = q.split(" ")
    if len(words) > 3 and rng.random() < 0.12:
        drop = [i for i, w in enumerate(words) if w.lower() in _DROPPABLE]
        if drop:
            del words[rng.choice(drop)]
    if len(words) > 2 and rng.random() < 0.12:
        words.insert(rng.randint(1, len(words) - 1), rng.choice(_FILLERS))
    return " ".join(words)


_ACTION_TEMPLATES = ["how do I {a}?", "how can I {a}?", "how to {a}", "I want to {a}", "I'd like to {a}",
                     "is there a way to {a}?", "can I {a}?", "tell me how to {a}", "help me {a}",
                     "what's the way to {a}?", "how would I {a}?", "I need to {a}", "how do you {a}?"]
_SUBJECT_TEMPLATES = ["what does {s} do?", "explain {s}", "tell me about {s}", "what is {s} for?",
                      "how do I use {s}?", "what is {s}?", "{s}?", "describe {s}", "what about {s}?",
                      "info on {s}", "how does {s} work?", "question about {s}"]

# Things outside the demo's world, composed from templates so that the refusal generalises.
_OOD_TOPICS = [
    "photosynthesis", "quantum physics", "the French revolution", "black holes", "machine learning",
    "the stock market", "climate change", "the roman empire", "DNA", "democracy", "jazz", "chess",
    "volcanoes", "the moon landing", "cryptocurrency", "evolution", "gravity", "the internet",
    "dinosaurs", "football", "coffee", "the ocean", "elections", "vaccines", "poetry", "love",
    "the meaning of life", "philosophy", "economics", "rust programming", "javascript", "linux",
    "the brain", "electricity", "music theory", "world war two", "mars", "cats", "dogs", "pizza",
]
_OOD_PLACES = ["France", "Japan", "Brazil", "Kenya", "Canada", "Peru", "Norway", "Egypt", "India",
               "Australia", "Mexico", "Italy", "Germany", "Spain", "China", "Chile"]
_OOD_CITIES = ["Paris", "Tokyo", "London", "New York", "Berlin", "Lagos", "Sydney", "Lima", "Rome", "Oslo"]
_OOD_PEOPLE = ["Einstein", "Napoleon", "Shakespeare", "Cleopatra", "Mozart", "Marie Curie", "Gandhi",
               "Picasso", "Newton", "Ada Lovelace", "Elon Musk", "Taylor Swift"]
_OOD_TEMPLATES = [
    "what is the capital of {place}?", "who was {person}?", "who is {person}?", "tell me about {topic}",
    "explain {topic}", "explain {topic} to me", "write a poem about {topic}", "write a story about {topic}",
    "tell me a joke", "tell me a joke about {topic}", "what's the weather in {city}?",
    "what's the weather like today?", "what time is it?", "what year is it?", "what is {topic}?",
    "how does {topic} work?", "translate hello into {lang}", "how do you say thank you in {lang}?",
    "who won the world cup?", "recommend a good book", "recommend a movie", "what should I eat tonight?",
    "how do I cook {food}?", "give me a recipe for {food}", "write python code to sort a list",
    "write a function that reverses a string", "how do I center a div?", "what is the population of {place}?",
    "summarize {topic}", "what do you think about {topic}?", "can you help me with my homework?",
    "how tall is mount everest?", "what is the speed of light?", "who invented the telephone?",
    "what is the best programming language?", "do you like {topic}?", "write an essay about {topic}",
    "how do I lose weight?", "give me some advice about {topic}", "what's the news today?",
    "how far is the moon?", "is {person} still alive?", "what language do they speak in {place}?",
    "sing me a song", "what is your favorite color?", "do you have feelings?", "are you conscious?",
    "can you browse the internet?", "search the web for {topic}", "what is the square root of pi in {lang}?",
]
_OOD_LANGS = ["French", "Spanish", "German", "Japanese", "Italian", "Swahili", "Chinese"]
_OOD_FOODS = ["pasta", "rice", "pancakes", "curry", "soup", "bread", "sushi", "tacos"]


_OOD_ACTIONS = ["bake bread", "fix my car", "learn guitar", "file my taxes", "learn python", "get a job",
                "write a resume", "book a flight", "grow tomatoes", "meditate", "change a tire", "make friends",
                "tie a tie", "invest money", "speak spanish", "fix my wifi", "train my dog", "sleep better",
                "install windows", "paint a wall", "start a business", "write a novel", "solve a rubik's cube"]


def _ood_question(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(_ACTION_TEMPLATES).format(a=rng.choice(_OOD_ACTIONS))
    t = rng.choice(_OOD_TEMPLATES)
    return t.format(topic=rng.choice(_OOD_TOPICS), place=rng.choice(_OOD_PLACES), city=rng.choice(_OOD_CITIES),
                    person=rng.choice(_OOD_PEOPLE), lang=rng.choice(_OOD_LANGS), food=rng.choice(_OOD_FOODS))


# ---------------------------------------------------------------------------------------------
# Surface variation of user text

_PREFIXES = ["", "", "", "", "", "", "hey, ", "ok, ", "quick question: ", "so ", "um, ", "hi, ", "please, ",
             "one more thing: ", "sorry, ", "hello, "]
_SUFFIXES = ["", "", "", "", "", "", " please", " thanks", " :)", "??", "!"]


def _vary(question: str, rng: random.Random) -> str:
    q = question
    r = rng.random()
    if r < 0.35:
        q = q[:1].upper() + q[1:]
    elif r < 0.40:
        q = q.lower()
    if rng.random() < 0.2 and q[-1:] in "?!.":
        q = q[:-1]
    if rng.random() < 0.25:
        prefix = rng.choice(_PREFIXES)
        if prefix:
            q = prefix + q[:1].lower() + q[1:] if not q.startswith(("NANOCHAT", "I ")) else prefix + q
    if rng.random() < 0.15:
        suffix = rng.choice(_SUFFIXES)
        q = q.rstrip("?!.") + suffix if suffix in ("??", "!") else q + suffix
    return q


# ---------------------------------------------------------------------------------------------
# Arithmetic through the calculator tool

def _integer(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.2:
        return rng.randint(0, 9)
    if r < 0.55:
        return rng.randint(10, 99)
    if r < 0.8:
        return rng.randint(100, 999)
    if r < 0.93:
        return rng.randint(1000, 9999)
    return rng.randint(10000, 999999)


def _number(rng: random.Random) -> str:
    if rng.random() < 0.12:  # decimals: 1-2 places, any size of integer part
        return f"{_integer(rng)}.{rng.randint(1, 99) if rng.random() < 0.5 else rng.randint(1, 9)}"
    return str(_integer(rng))


_SYM = {"+": "+", "-": "-", "*": "*", "/": "/"}
_WORD_TEMPLATES = {
    "+": ["{a} plus {b}", "add {a} and {b}", "the sum of {a} and {b}", "{a} added to {b}"],
    "-": ["{a} minus {b}", "subtract {b} from {a}", "{a} take away {b}", "the difference between {a} and {b}"],
    "*": ["{a} times {b}", "multiply {a} by {b}", "the product of {a} and {b}", "{a} multiplied by {b}",
          "{a} x {b}"],
    "/": ["{a} divided by {b}", "divide {a} by {b}", "{a} over {b}", "the quotient of {a} and {b}"],
}
_ASK = [
    "what is {q}?", "what's {q}?", "what is {q}", "calculate {q}", "compute {q}", "{q} = ?", "{q}?", "{q}",
    "how much is {q}?", "can you work out {q}?", "please calculate {q}", "solve {q}", "what do you get for {q}?",
    "what does {q} equal?", "evaluate {q}", "tell me {q}", "quick math: {q}", "could you compute {q}?",
    "what is the result of {q}?", "find {q}", "{q} equals what?", "I need {q}", "work out {q} for me",
]
_LEAD = ["Let me calculate that.", "I'll use the calculator.", "Let me compute that with the calculator."]
# The restating text starts with a space: front-ends that hide the tool call still read well.
_RESTATE_EXPR = [" {e} = {r}.", " {e} is {r}.", " The answer is {r}."]


def _arith_expression(rng: random.Random) -> tuple[str, str]:
    """(how the user writes it, the python expression)."""
    kind = rng.random()
    op = rng.choice("+-*/" if rng.random() < 0.8 else "**//")  # extra weight on * and /
    if kind < 0.55:  # symbolic, possibly spaced
        a, b = _number(rng), _number(rng)
        if op == "/" and rng.random() < 0.6:  # mostly exact quotients
            b = str(rng.randint(1, 99))
            a = str(int(b) * rng.randint(0, 999))
        if op == "/" and float(b) == 0:
            b = str(rng.randint(1, 9))
        sp = " " if rng.random() < 0.35 else ""
        shown_op = op
        if op == "*" and rng.random() < 0.12:
            shown_op = "x"
        e = f"{a}{sp}{op}{sp}{b}"
        return f"{a}{sp}{shown_op}{sp}{b}", e
    if kind < 0.85:  # words
        a, b = _number(rng), _number(rng)
        if op == "/":
            b = str(rng.randint(1, 60))
            a = str(int(b) * rng.randint(1, 400)) if rng.random() < 0.7 else a
        return rng.choice(_WORD_TEMPLATES[op]).format(a=a, b=b), f"{a}{op}{b}"
    # three operands, maybe parenthesised
    a, b, c = (str(rng.randint(1, 99) if rng.random() < 0.5 else rng.randint(1, 999)) for _ in range(3))
    op2 = rng.choice("+-*")
    op1 = rng.choice("+-*")
    if rng.random() < 0.5:
        e = f"({a}{op1}{b}){op2}{c}"
    else:
        e = f"{a}{op1}{b}{op2}{c}"
    return e, e


def _special_arith(rng: random.Random) -> tuple[str, str] | None:
    r = rng.random()
    if r < 0.3:
        n = rng.randint(2, 999)
        return rng.choice(["the square of {n}", "{n} squared"]).format(n=n), f"{n}*{n}"
    if r < 0.55:
        p, n = rng.choice([5, 10, 15, 20, 25, 30, 50, 75]), rng.randint(1, 2000)
        return f"{p}% of {n}", f"{p}*{n}/100"
    if r < 0.75:
        n = rng.randint(1, 5000) * 2
        return rng.choice(["half of {n}", "{n} halved"]).format(n=n), f"{n}/2"
    return None


def arithmetic_reply(question_expr: str, py: str, rng: random.Random) -> list[dict]:
    result = calculate(py)
    assert result is not None, py
    lead = rng.choice(_LEAD)
    restate = rng.choice(_RESTATE_EXPR).format(e=py, r=result)
    return [
        {"type": "text", "text": lead},
        {"type": "python", "text": py},
        {"type": "python_output", "text": result},
        {"type": "text", "text": restate},
    ]


def arithmetic_turn(rng: random.Random) -> tuple[str, list[dict], str]:
    """One user question and the tool-using reply; also returns the result for follow-ups."""
    special = _special_arith(rng) if rng.random() < 0.12 else None
    shown, py = special or _arith_expression(rng)
    question = _vary(rng.choice(_ASK).format(q=shown), rng)
    parts = arithmetic_reply(shown, py, rng)
    return question, parts, parts[2]["text"]


_FOLLOW = [
    ("and times {n}?", "*"), ("now multiply that by {n}", "*"), ("and plus {n}?", "+"), ("add {n} to that", "+"),
    ("now subtract {n}", "-"), ("minus {n}?", "-"), ("divide that by {n}", "/"), ("and that divided by {n}?", "/"),
]


def followup_turn(prev: str, rng: random.Random) -> tuple[str, list[dict], str] | None:
    if "e" in prev or "inf" in prev or "nan" in prev:
        return None
    template, op = rng.choice(_FOLLOW)
    n = str(rng.randint(1, 99))
    py = f"{prev}{op}{n}"
    if calculate(py) is None:
        return None
    parts = arithmetic_reply(py, py, rng)
    return _vary(template.format(n=n), rng), parts, parts[2]["text"]


_COUNT_WORDS = ["strawberry", "banana", "mississippi", "nanochat", "terminal", "checkpoint", "tokenizer",
                "calculator", "bookkeeper", "committee", "parallel", "assessment", "balloon", "coffee",
                "letter", "engineering", "successful", "programming", "abracadabra", "llama"]


def count_turn(rng: random.Random) -> tuple[str, list[dict]]:
    word = rng.choice(_COUNT_WORDS)
    letter = rng.choice(sorted(set(word))) if rng.random() < 0.85 else rng.choice("aeiourstz")
    q = rng.choice(["how many {l} are in {w}?", "how many times does the letter {l} appear in {w}?",
                    "count the letter {l} in {w}", "how many {l}'s are there in {w}?"]).format(l=letter, w=word)
    py = f"'{word}'.count('{letter}')"
    result = calculate(py)
    assert result is not None, py
    parts = [
        {"type": "text", "text": "Let me count with the calculator."},
        {"type": "python", "text": py},
        {"type": "python_output", "text": result},
        {"type": "text", "text": f" The letter {letter} appears {result} times in {word}."},
    ]
    return _vary(q, rng), parts


# ---------------------------------------------------------------------------------------------
# Conversations

_SYSTEM_PROMPTS = ["You are a helpful assistant.", "Be concise.", "You are nanochat, a helpful assistant.",
                   "Answer briefly.", "You are a friendly assistant.", "Always be polite."]


def intent_question(name: str, questions: list[str], rng: random.Random) -> str:
    actions, subjects = ACTIONS_AND_SUBJECTS.get(name, ([], []))
    r = rng.random()
    if r < 0.22 and actions:
        q = rng.choice(_ACTION_TEMPLATES).format(a=rng.choice(actions))
    elif r < 0.44 and subjects:
        q = rng.choice(_SUBJECT_TEMPLATES).format(s=rng.choice(subjects))
    elif r < 0.54 and name in NUMERIC_QUESTIONS:
        q = _numeric_question(name, rng)
    else:
        q = rng.choice(questions)
    return _reword(q, rng) if rng.random() < 0.5 else q


def _intent_turn(rng: random.Random) -> tuple[str, str]:
    name, questions, answer = rng.choice(INTENTS)
    return _vary(intent_question(name, questions, rng), rng), answer


def _single_turn(rng: random.Random) -> list[tuple[str, object]]:
    r = rng.random()
    if r < 0.36:
        q, parts, _ = arithmetic_turn(rng)
        return [(q, parts)]
    if r < 0.39:
        q, parts = count_turn(rng)
        return [(q, parts)]
    if r < 0.48:
        return [(_vary(_ood_question(rng), rng), OUT_OF_WORLD)]
    q, a = _intent_turn(rng)
    return [(q, a)]


def make_conversation(rng: random.Random) -> dict:
    turns: list[tuple[str, object]] = []
    r = rng.random()
    n_exchanges = 1 if r < 0.72 else (2 if r < 0.90 else 3)
    while len(turns) < n_exchanges:
        if turns and rng.random() < 0.2 and isinstance(turns[-1][1], list) and turns[-1][1][0]["text"] in _LEAD:
            follow = followup_turn(turns[-1][1][2]["text"], rng)
            if follow:
                turns.append((follow[0], follow[1]))
                continue
        turns += _single_turn(rng)
    messages: list[dict] = []
    if rng.random() < 0.05:
        messages.append({"role": "system", "content": rng.choice(_SYSTEM_PROMPTS)})
    for q, a in turns:
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": a})
    return {"messages": messages}


def generate_conversations(n: int, seed: int) -> list[dict]:
    """n conversations, a pure function of (n, seed)."""
    rng = random.Random(seed)
    return [make_conversation(rng) for _ in range(n)]


def corpus_texts(conversations: list[dict]):
    """Every string the tokenizer will see, in order (for BPE training)."""
    for conv in conversations:
        for m in conv["messages"]:
            if isinstance(m["content"], str):
                yield m["content"]
            else:
                for p in m["content"]:
                    yield p["text"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("-n", "--num", type=int, default=20000, help="number of conversations")
    ap.add_argument("--out", default="-", help="JSONL output path ('-' = stdout)")
    args = ap.parse_args()
    convs = generate_conversations(args.num, args.seed)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    for c in convs:
        out.write(json.dumps(c, ensure_ascii=False) + "\n")
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
